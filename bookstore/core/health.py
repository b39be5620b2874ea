"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import msgspec
from litestar import Controller, get

from bookstore.core.database import ping_database
from bookstore.core.errors import ServiceUnavailableError, problem_responses

__all__ = ["HealthController", "HealthStatus"]

_PUBLIC: list[dict[str, list[str]]] = [{}]


class HealthStatus(msgspec.Struct):
    status: str


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get(
        operation_id="CheckLiveness",
        summary="Liveness: the process serves requests",
        exclude_from_auth=True,
        security=_PUBLIC,
    )
    async def live(self) -> HealthStatus:
        return HealthStatus(status="ok")

    @get(
        "/ready",
        operation_id="CheckReadiness",
        summary="Readiness: the database answers",
        exclude_from_auth=True,
        security=_PUBLIC,
        responses=problem_responses(503),
    )
    async def ready(self) -> HealthStatus:
        if not await ping_database():
            raise ServiceUnavailableError("The database is unreachable.", headers={"Retry-After": "5"})
        return HealthStatus(status="ok")
