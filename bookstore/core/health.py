"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get

from bookstore.core.database import ping_database
from bookstore.core.errors import ServiceUnavailableError, problem_responses
from bookstore.core.ratelimit import RATE_LIMIT_STORE, CountingMemoryStore, CountingRedisStore, fail_open_count

__all__ = ["HealthController", "HealthStatus", "Readiness"]

_PUBLIC: list[dict[str, list[str]]] = [{}]


class HealthStatus(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    status: Literal["ok"]
    rate_limit_store: Annotated[
        Literal["redis", "memory", "unreachable"],
        msgspec.Meta(description="Where rate limits are counted; `unreachable`: Redis is down (reads fail open)."),
    ]
    rate_limit_fail_open: Annotated[
        int, msgspec.Meta(description="Requests this worker served unlimited because Redis was unreachable.")
    ]


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
        description="503 when PostgreSQL is down. Redis being down does not make the service unready.",
        exclude_from_auth=True,
        security=_PUBLIC,
        responses=problem_responses(503, rate_limited=False),
    )
    async def ready(self, request: Request[Any, Any, Any]) -> Readiness:
        if not await ping_database():
            raise ServiceUnavailableError("The database is unreachable.", headers={"Retry-After": "5"})
        store = request.app.stores.get(RATE_LIMIT_STORE)
        kind: Literal["redis", "memory", "unreachable"] = "memory"
        if isinstance(store, CountingRedisStore):
            kind = "redis" if await store.ping() else "unreachable"
        elif not isinstance(store, CountingMemoryStore):
            raise TypeError(f"unexpected rate limit store {type(store).__name__}")
        return Readiness(status="ok", rate_limit_store=kind, rate_limit_fail_open=fail_open_count.value)
