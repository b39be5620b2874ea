"""Domain errors and their one mapping to RFC 9457 problem details (``application/problem+json``).

Handlers and services raise the small exception classes below; they never build error responses.
Every error leaving the service, including Litestar's own (validation, 404 routing, 405, 413,
401 from the JWT middleware) and unexpected ones, is rendered here with the same body shape.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Annotated, Any, ClassVar

import asyncpg
import msgspec
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from msgspec import Meta

from bookstore.core.database import DATABASE_UNAVAILABLE_ERRORS, describe_error, outage_cause
from bookstore.core.logging import request_id_context

__all__ = [
    "DATABASE_RETRY_AFTER_SECONDS",
    "PROBLEM_MEDIA_TYPE",
    "AuthenticationError",
    "ConflictError",
    "DomainError",
    "FieldError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "ProblemDetails",
    "ServiceUnavailableError",
    "UnsupportedMediaTypeError",
    "create_problem_details_plugin",
    "invalid_input",
    "problem_responses",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_logger = logging.getLogger("bookstore.errors")
# Seconds a client is asked to wait after a 503 for an unavailable database: about what a
# PostgreSQL restart or failover takes.
DATABASE_RETRY_AFTER_SECONDS = "5"


class DomainError(Exception):
    """Base of the errors the service raises on purpose; each maps to one HTTP status."""

    status_code: ClassVar[int] = HTTPStatus.BAD_REQUEST

    def __init__(
        self, detail: str, *, headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        """``extra``: members added to the problem document (RFC 9457 extension members), for
        details a client acts on, e.g. which books are out of stock."""
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extra = extra


class AuthenticationError(DomainError):
    status_code = HTTPStatus.UNAUTHORIZED


class PermissionDeniedError(DomainError):
    status_code = HTTPStatus.FORBIDDEN


class NotFoundError(DomainError):
    status_code = HTTPStatus.NOT_FOUND


class ConflictError(DomainError):
    status_code = HTTPStatus.CONFLICT


class PreconditionFailedError(DomainError):
    status_code = HTTPStatus.PRECONDITION_FAILED


class PayloadTooLargeError(DomainError):
    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedMediaTypeError(DomainError):
    status_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class ServiceUnavailableError(DomainError):
    status_code = HTTPStatus.SERVICE_UNAVAILABLE


class FieldError(msgspec.Struct):
    """One invalid input: where it was (``body``, ``query``, ``path``, ``header``) and why."""

    message: str
    key: str | None = None
    source: str | None = None


class ProblemDetails(msgspec.Struct, omit_defaults=True):
    """The body of every error response (RFC 9457)."""

    status: int
    title: str
    detail: str
    errors: list[FieldError] | None = None
    request_id: Annotated[
        str | None,
        Meta(description="The request's id, also in its X-Request-ID header and in the service's logs."),
    ] = None


def invalid_input(message: str, *, key: str | None, source: str) -> ValidationException:
    """A 400 for one invalid input (``source``: ``body``, ``query``, ``path`` or ``header``),
    shaped like the errors Litestar raises when a request does not match a handler's types."""
    error = FieldError(message=message, key=key, source=source)
    return ValidationException(detail=_validation_detail([error]), extra=[error])


def _validation_detail(errors: list[Any]) -> str:
    # Names what failed, never the request: Litestar's "Validation failed for GET <url>" echoed
    # the whole URL (query included) back; `errors` carries each message.
    where: dict[str, None] = {}  # ordered and without repeats
    for error in errors:
        if isinstance(error, FieldError):
            key, source = error.key, error.source
        elif isinstance(error, dict):  # Litestar's own validation errors; `source` is an enum there
            key, source = error.get("key"), getattr(error.get("source"), "value", error.get("source"))
        else:
            continue
        where[f"`{key}` in the {source or 'request'}" if key else f"the {source or 'request'}"] = None
    return f"Invalid input: {', '.join(where)}." if where else "Invalid input."


def _problem(
    status: int, detail: str, *, headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None
) -> ProblemDetailsException:
    if status == HTTPStatus.UNAUTHORIZED:
        headers = {"WWW-Authenticate": 'Bearer realm="bookstore"', **(headers or {})}
    request_id = request_id_context.get()
    if request_id is not None:
        # So that a client reporting an error can point at its lines in the logs.
        extra = {**(extra or {}), "request_id": request_id}
    return ProblemDetailsException(
        status_code=status,
        title=HTTPStatus(status).phrase,
        detail=detail,
        headers=headers,
        extra=extra,
    )


def _from_http_exception(exc: HTTPException) -> ProblemDetailsException:
    # Litestar's stock conversion puts the message in `title` and the status phrase in `detail`;
    # RFC 9457 wants the reverse, and validation failures listed under one stable key.
    extra = {"errors": exc.extra} if isinstance(exc.extra, list) and exc.extra else None
    status = exc.status_code
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR and status != HTTPStatus.SERVICE_UNAVAILABLE:
        _logger.error("server error: %s", exc.detail, exc_info=exc)
        return _problem(status, "The server could not complete the request.")
    validation_errors = exc.extra if isinstance(exc, ValidationException) and isinstance(exc.extra, list) else None
    detail = exc.detail if validation_errors is None else _validation_detail(validation_errors)
    return _problem(status, detail, headers=exc.headers, extra=extra)


def _from_domain_error(exc: DomainError) -> ProblemDetailsException:
    return _problem(exc.status_code, exc.detail, headers=exc.headers, extra=exc.extra)


def _from_data_error(exc: asyncpg.DataError) -> ProblemDetailsException:
    # Input validation should stop bad values first; this is the backstop that keeps a value
    # PostgreSQL rejects (out of range, bad encoding) a client error instead of a 500.
    _logger.warning("database rejected a value: %s", exc)
    return _problem(HTTPStatus.BAD_REQUEST, "A value is out of the range the service accepts.")


def _from_database_unavailable(exc: Exception) -> ProblemDetailsException:
    # One line per failed request, no traceback: during an outage they all fail alike.
    _logger.error("database unavailable: %s", describe_error(exc))
    return _problem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "The database is unavailable; retry after the number of seconds in Retry-After.",
        headers={"Retry-After": DATABASE_RETRY_AFTER_SECONDS},
    )


def _from_interface_error(exc: asyncpg.InterfaceError) -> ProblemDetailsException:
    # Raised by a clean-up (a rollback) on a connection that had just died: the outage is the news.
    cause = outage_cause(exc)
    if isinstance(cause, Exception):
        return _from_database_unavailable(cause)
    return _from_unexpected(exc)


def _from_recursion_error(exc: RecursionError) -> ProblemDetailsException:
    # msgspec raises RecursionError (not a DecodeError) on absurdly nested JSON.
    return _problem(HTTPStatus.BAD_REQUEST, "The JSON document is nested too deeply.")


def _from_unexpected(exc: Exception) -> ProblemDetailsException:
    _logger.error("unhandled error", exc_info=exc)
    return _problem(HTTPStatus.INTERNAL_SERVER_ERROR, "The server could not complete the request.")


def create_problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            exception_to_problem_detail_map={
                HTTPException: _from_http_exception,
                DomainError: _from_domain_error,
                asyncpg.DataError: _from_data_error,
                **dict.fromkeys(DATABASE_UNAVAILABLE_ERRORS, _from_database_unavailable),
                asyncpg.InterfaceError: _from_interface_error,
                RecursionError: _from_recursion_error,
                Exception: _from_unexpected,
            }
        )
    )


def problem_responses(*statuses: int, rate_limited: bool = True) -> dict[int, ResponseSpec]:
    """OpenAPI entries documenting that a route may answer with these error statuses.

    Rate-limited routes (all but the probes and docs) may also answer 429.
    """
    if rate_limited:
        statuses = (*statuses, HTTPStatus.TOO_MANY_REQUESTS)
    return {
        status: ResponseSpec(
            data_container=ProblemDetails,
            media_type=PROBLEM_MEDIA_TYPE,
            description=HTTPStatus(status).phrase,
            generate_examples=False,
        )
        for status in statuses
    }
