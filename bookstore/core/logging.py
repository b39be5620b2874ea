"""Logging: structured lines through structlog, JSON in production and readable in development,
each carrying the id of the request it was written for.

- The stdlib loggers (``bookstore.*``, ``litestar``, ``asyncpg``, ``granian`` …) and structlog's own
  loggers end in one handler on stderr whose formatter is structlog's ``ProcessorFormatter``:
  JSON (one object per line, the traceback as a string under ``exception``) or ``ConsoleRenderer``.
- :data:`request_id_context` holds the id of the request being served (set by
  :class:`~bookstore.core.observability.RequestObserver`); :func:`add_request_id` puts it on every
  line written while it is set, unhandled-error lines included.
- The access line (one per request) is not routed through logging at all in JSON mode: formatting
  a stdlib record through the ``ProcessorFormatter`` cost ~50 µs, encoding the line with msgspec and
  writing it with one ``os.write`` ~2.5 µs (research for issue 9, §3). Its keys are those of the
  other JSON lines.

litestar-granian pickles the formatter into Granian's logging configuration (so Granian's own lines
come out in the same format), which is why every processor here is a module-level function or a
structlog class, never a lambda or closure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import msgspec
import structlog
from litestar.logging.config import LoggingConfig, StructLoggingConfig
from litestar.plugins.structlog import StructlogConfig, StructlogPlugin
from structlog.typing import EventDict, Processor, WrappedLogger

from bookstore.settings import Settings

__all__ = [
    "ACCESS_LOGGER_NAME",
    "AccessLog",
    "AccessLogLine",
    "add_log_level",
    "add_request_id",
    "add_timestamp",
    "create_access_log",
    "create_logging_plugin",
    "render_json",
    "request_id_context",
    "stderr_handler",
]

ACCESS_LOGGER_NAME: Final = "bookstore.access"
# The id of the request being served; None outside a request (start-up, background tasks).
request_id_context: ContextVar[str | None] = ContextVar("bookstore_request_id", default=None)
# (request id, method, path template, status, seconds) -> one access line.
AccessLog = Callable[[str, str, str, int, float], None]

_STDERR: Final = 2
# structlog names levels after its methods; upper case, as stdlib logging names them and as the
# service's lines always read (operators' and tests' searches for "ERROR" keep working).
_LEVEL_NAMES: Final = {"warn": "WARNING", "exception": "ERROR"}


def _encode_unknown(value: object) -> str:
    # A value a caller put on a line that JSON has no form for: its repr, rather than a lost line.
    return repr(value)


_json_encoder: Final = msgspec.json.Encoder(enc_hook=_encode_unknown)


def add_request_id(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: the current request's id, if a request is being served."""
    request_id = request_id_context.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


def add_log_level(_logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: ``level``, upper case (``INFO``, ``WARNING``, ``ERROR`` …)."""
    event_dict["level"] = _LEVEL_NAMES.get(method_name) or method_name.upper()
    return event_dict


def add_timestamp(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: ``timestamp`` in UTC, which msgspec writes as RFC 3339 (``…T07:05:18.172Z``),
    exactly as in the access line."""
    event_dict["timestamp"] = datetime.now(UTC)
    return event_dict


def render_json(event_dict: EventDict, **_: Any) -> str:
    """``JSONRenderer``'s serializer: msgspec, several times quicker than ``json.dumps``."""
    return _json_encoder.encode(event_dict).decode()


def _formatter(as_json: bool) -> dict[str, Any]:
    """The ``dictConfig`` of the one formatter every line goes through."""
    renderer: list[Processor]
    if as_json:
        renderer = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(serializer=render_json)]
    else:
        colors = os.isatty(_STDERR)
        styles = structlog.dev.ConsoleRenderer.get_default_level_styles(colors)
        level_styles = {name.upper(): style for name, style in styles.items()}
        # Plain tracebacks: structlog's default (rich's when installed, as litestar's CLI brings it) prints
        # every frame's local variables, which would put passwords and tokens into the log.
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=colors, level_styles=level_styles, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    return {
        "()": structlog.stdlib.ProcessorFormatter,
        # Lines from stdlib loggers: what structlog's own chain below adds to its lines.
        "foreign_pre_chain": [
            add_request_id,
            add_log_level,
            add_timestamp,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
        ],
        "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    }


def stderr_handler() -> logging.StreamHandler[TextIO]:
    """A handler writing each line with one write to file descriptor 2, as the access line is
    written: lines reach the same place in the order written, whoever replaced ``sys.stderr``."""
    # Never closed: it lives as long as the handler, and fd 2 is not its to close (closefd=False).
    stream = open(_STDERR, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115 - never closed, see above
    return logging.StreamHandler(stream)


def create_logging_plugin(settings: Settings) -> StructlogPlugin:
    """Litestar's structlog plugin configured for the service: JSON or console lines on stderr at
    ``settings.log_level``, the request id on each, and no request-logging middleware (the
    observer writes the access line for a fraction of its cost)."""
    level = settings.log_level
    standard_library = LoggingConfig(
        formatters={"standard": _formatter(settings.logs_as_json)},
        # Written in the calling thread: a queue's listener thread would not see the request's
        # ContextVar on Python >= 3.12, where Litestar formats there.
        handlers={"console": {"()": stderr_handler, "formatter": "standard"}},
        root={"level": level, "handlers": ["console"]},
        loggers={"litestar": {"level": level, "handlers": ["console"], "propagate": False}},
        log_exceptions="never",
    )
    structlog_config = StructLoggingConfig(
        processors=[
            add_request_id,
            add_log_level,
            add_timestamp,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        # Through the stdlib handler above: one stream, one format, lines in the order written.
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        standard_lib_logging_config=standard_library,
        # errors.py logs unexpected errors once, with the request id; Litestar would log them again.
        log_exceptions="never",
    )
    return StructlogPlugin(StructlogConfig(structlog_logging_config=structlog_config, enable_middleware_logging=False))


class AccessLogLine(msgspec.Struct, kw_only=True):
    """One access line, keyed like every other JSON line."""

    timestamp: datetime
    level: str = "INFO"
    logger: str = ACCESS_LOGGER_NAME
    event: str = "request"
    request_id: str
    method: str
    path: str
    status: int
    duration_ms: float


_access_line_encoder: Final = msgspec.json.Encoder()


def _write_json_access_line(request_id: str, method: str, path: str, status: int, seconds: float) -> None:
    line = AccessLogLine(
        timestamp=datetime.now(UTC),
        request_id=request_id,
        method=method,
        path=path,
        status=status,
        duration_ms=round(seconds * 1000, 3),
    )
    try:
        # One write per line: lines of several workers sharing stderr never interleave (a pipe
        # writes up to 4 KiB atomically).
        os.write(_STDERR, _access_line_encoder.encode(line) + b"\n")
    except OSError:
        # A closed or broken stderr must not fail the request; stdlib logging drops such lines too.
        return


def _log_console_access_line(request_id: str, method: str, path: str, status: int, seconds: float) -> None:
    # Development only, where readability is worth a stdlib record per request.
    logging.getLogger(ACCESS_LOGGER_NAME).info(
        "request",
        extra={
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": int(status),  # Litestar's HTTPStatus would render as its repr
            "duration_ms": round(seconds * 1000, 3),
        },
    )


def create_access_log(settings: Settings) -> AccessLog | None:
    """What writes the access line; None when access lines are off (``BOOKSTORE_ACCESS_LOG`` or a
    log level above INFO)."""
    if not settings.access_log or logging.getLevelNamesMapping()[settings.log_level] > logging.INFO:
        return None
    return _write_json_access_line if settings.logs_as_json else _log_console_access_line
