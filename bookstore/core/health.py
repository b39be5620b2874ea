"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency

from bookstore.core.database import ping_database
from bookstore.core.errors import DATABASE_RETRY_AFTER_SECONDS, ServiceUnavailableError, problem_responses
from bookstore.core.openapi import PUBLIC
from bookstore.core.ratelimit import RateLimiter, StoreStatus

__all__ = ["HealthController", "HealthStatus", "Readiness"]


class HealthStatus(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    status: Literal["ok"]
    rate_limit_store: Annotated[
        StoreStatus,
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
        security=PUBLIC,
    )
    async def live(self) -> HealthStatus:
        return HealthStatus(status="ok")

    @get(
        "/ready",
        operation_id="CheckReadiness",
        summary="Readiness: the database answers",
        description="503 when PostgreSQL is down. Redis being down does not make the service unready.",
        exclude_from_auth=True,
        security=PUBLIC,
        responses=problem_responses(503, rate_limited=False),
    )
    async def ready(self, rate_limiter: NamedDependency[RateLimiter]) -> Readiness:
        if not await ping_database():
            raise ServiceUnavailableError(
                "The database is unreachable.", headers={"Retry-After": DATABASE_RETRY_AFTER_SECONDS}
            )
        return Readiness(
            status="ok",
            rate_limit_store=await rate_limiter.store.status(),
            rate_limit_fail_open=rate_limiter.fail_open_count,
        )
