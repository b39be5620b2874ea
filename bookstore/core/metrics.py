"""Prometheus metrics: the request counter and latency histogram, and the app's own counters and gauges.

Every metric is defined once here. What happens on the request path is only tallied in plain Python
(a dict lookup and a few additions, ~3 µs less per request than recording it in prometheus_client):
:func:`flush_metrics` moves the tallies into ``prometheus_client`` once a second, before every scrape
and when the worker stops. In multiprocess mode each ``inc()``/``observe()`` takes a lock, asks for
the pid and writes into a memory-mapped file (~1.4 µs a counter, ~2.8 µs a histogram: research for
issue 9, §1); a flush does that once per series instead of once per request. A counter read by a
scrape may thus lag another worker's requests by up to a second, never lose them.

Several Granian workers: ``bookstore serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a per-run directory
before the workers start, so each worker writes its values into its own files there and a scrape, which
lands on one worker, sums them (``prometheus_client`` multiprocess mode). Without that variable (tests, a
single process) the default registry is used.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from litestar import Request, Router
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from litestar.plugins import InitPlugin
from litestar.plugins.prometheus import PrometheusController
from litestar.types import Guard
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, multiprocess

from bookstore.core.database import pool_usage
from bookstore.core.http import method_label

__all__ = [
    "DB_POOL_IN_USE",
    "DB_POOL_SIZE",
    "LOGIN_FAILURE",
    "LOGIN_LIMITED",
    "LOGIN_SUCCESS",
    "METRICS_PATH",
    "MULTIPROCESS_DIR_VARIABLE",
    "RATE_LIMIT_ALLOWED",
    "RATE_LIMIT_LIMITED",
    "RATE_LIMIT_STORE_UNREACHABLE",
    "REFRESH_TOKEN_REUSE",
    "UNMATCHED_PATH",
    "MetricsPlugin",
    "TalliedCounter",
    "flush_metrics",
    "multiprocess_directory",
    "observe_request",
    "report_pool_usage",
]

METRICS_PATH: Final = "/metrics"
MULTIPROCESS_DIR_VARIABLE: Final = "PROMETHEUS_MULTIPROC_DIR"
# The `_created` series are not exported in multiprocess mode; without them one process reads the same.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
# Seconds between two flushes of a worker's tallies and readings of its pool; a scrape also flushes and
# reads the worker it lands on.
_FLUSH_SECONDS: Final = 1.0
# Routing 404/405 and CORS preflights have no path template: they share one series.
UNMATCHED_PATH: Final = "<unmatched>"

_REQUESTS = Counter(
    "bookstore_http_requests_total",
    "HTTP requests answered, by method, path template and status.",
    ["method", "path", "status"],
)
# Not labelled by status: every status would multiply the bucket series; the counter has the statuses.
_DURATION_BUCKETS: Final = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, float("inf"))
_REQUEST_DURATION = Histogram(
    "bookstore_http_request_duration_seconds",
    "Time from receiving a request until its response is sent, by method and path template.",
    ["method", "path"],
    buckets=_DURATION_BUCKETS,
)
# Scrapes are not counted: reading the counter must not change it.
_NOT_COUNTED_PATHS: Final = frozenset({METRICS_PATH})


class TalliedCounter:
    """A counter child whose increments are summed here and added to it at the next flush."""

    __slots__ = ("_child", "_pending")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self._pending = 0
        _tallied_counters.append(self)

    def inc(self) -> None:
        self._pending += 1

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, 0
            self._child.inc(pending)


_tallied_counters: list[TalliedCounter] = []

_rate_limit_decisions = Counter(
    "bookstore_rate_limit_decisions_total",
    "Rate-limit decisions: allowed, limited (429), or store_unreachable (taken without the store: reads "
    "are let through, logins and registrations refused with 503).",
    ["decision"],
)
RATE_LIMIT_ALLOWED: Final = TalliedCounter(_rate_limit_decisions.labels("allowed"))
RATE_LIMIT_LIMITED: Final = TalliedCounter(_rate_limit_decisions.labels("limited"))
RATE_LIMIT_STORE_UNREACHABLE: Final = TalliedCounter(_rate_limit_decisions.labels("store_unreachable"))

_logins = Counter(
    "bookstore_logins_total",
    "Login attempts: success, failure (unknown email or wrong password), or limited (429 from the login "
    "limit per IP or per account).",
    ["outcome"],
)
LOGIN_SUCCESS: Final = TalliedCounter(_logins.labels("success"))
LOGIN_FAILURE: Final = TalliedCounter(_logins.labels("failure"))
LOGIN_LIMITED: Final = TalliedCounter(_logins.labels("limited"))

REFRESH_TOKEN_REUSE: Final = TalliedCounter(
    Counter(
        "bookstore_refresh_token_reuse_total",
        "Spent refresh tokens presented again; each ends the session the token belonged to.",
    )
)

# livesum: the sum over the workers that are alive (a dead worker's file is pruned at scrape time).
_db_pool_connections = Gauge(
    "bookstore_db_pool_connections",
    "Database connections held by the pools of all workers: size (open) and in_use (checked out).",
    ["state"],
    multiprocess_mode="livesum",
)
DB_POOL_SIZE: Final = _db_pool_connections.labels("size")
DB_POOL_IN_USE: Final = _db_pool_connections.labels("in_use")

_RequestChildren = tuple[Counter, Histogram] | None
_children: dict[tuple[str, str, int], _RequestChildren] = {}
# Per (method, path template, status) since the last flush: [count, seconds, count per duration bucket...].
_request_tallies: dict[tuple[str, str, int], list[float]] = {}


def observe_request(method: str, path_template: str, status: int, seconds: float) -> None:
    """Count one answered request and how long it took, until the next :func:`flush_metrics`.

    ``path_template`` is the route's template (``/api/v1/books/{book_id}``), never the raw path, or
    ``UNMATCHED_PATH``. Per request: a dict lookup, a bisection and three additions.
    """
    key = (method_label(method), path_template, status)
    try:
        tally = _request_tallies[key]
    except KeyError:
        tally = _request_tallies[key] = [0, 0.0, *(0 for _ in _DURATION_BUCKETS)]
    tally[0] += 1
    tally[1] += seconds
    # The first bucket whose upper bound is at least the duration, as Histogram.observe chooses.
    tally[2 + bisect.bisect_left(_DURATION_BUCKETS, seconds)] += 1


def flush_metrics() -> None:
    """Add this worker's tallies since the last flush to its ``prometheus_client`` metrics."""
    global _request_tallies  # swapped whole: a tally added meanwhile goes to the next flush
    tallies, _request_tallies = _request_tallies, {}
    for key, tally in tallies.items():
        try:
            children = _children[key]
        except KeyError:
            children = _bind_request_children(*key)
        if children is None:
            continue
        requests, durations = children
        requests.inc(tally[0])
        # A whole batch of observations at once: Histogram has only observe(one value), so its
        # sum and bucket values (prometheus_client 0.2x, pinned in uv.lock) take the batch directly.
        durations._sum.inc(tally[1])
        for bucket, count in zip(durations._buckets, tally[2:], strict=True):
            if count:
                bucket.inc(count)
    for counter in _tallied_counters:
        counter.flush()


def _bind_request_children(method: str, path_template: str, status: int) -> _RequestChildren:
    children: _RequestChildren = None
    if path_template not in _NOT_COUNTED_PATHS:
        children = (
            _REQUESTS.labels(method, path_template, str(status)),
            _REQUEST_DURATION.labels(method, path_template),
        )
    _children[(method, path_template, status)] = children
    return children


def _prepare_scrape(_request: Request[Any, Any, Any]) -> None:
    """Before a scrape: this worker's tallies and pool into its metrics, dead workers' gauges out."""
    flush_metrics()
    report_pool_usage()
    directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if directory is not None:
        _prune_dead_workers(Path(directory))


class _MetricsController(PrometheusController):
    """Litestar's exposition: the default registry, or every worker's files summed in multiprocess mode."""

    path = METRICS_PATH
    include_in_schema = False


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[Path]:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory for the block, for the workers started in it.

    A new temporary directory, removed afterwards; or, when the variable is already set, that directory,
    emptied of metric files before and after. Files left from an earlier run would add its counts to
    this one's, so the directory must belong to this server alone.
    """
    configured = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if configured is None:
        directory = Path(tempfile.mkdtemp(prefix="bookstore-metrics-"))
        os.environ[MULTIPROCESS_DIR_VARIABLE] = str(directory)
        try:
            yield directory
        finally:
            os.environ.pop(MULTIPROCESS_DIR_VARIABLE, None)
            shutil.rmtree(directory, ignore_errors=True)
        return
    directory = Path(configured)
    directory.mkdir(parents=True, exist_ok=True)
    _remove_metric_files(directory)
    try:
        yield directory
    finally:
        _remove_metric_files(directory)


def _remove_metric_files(directory: Path) -> None:
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


def _prune_dead_workers(directory: Path) -> None:
    """Drop the live-gauge files of workers that are gone, so ``livesum`` gauges sum live workers only.

    Granian offers the app no hook when a worker dies (a crash never runs ``on_shutdown``), so the scrape
    checks. Counter and histogram files of dead workers are kept: totals must never go down.
    """
    for path in directory.glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]  # unannotated upstream
        except PermissionError:
            # Alive, under another user.
            continue


def report_pool_usage() -> None:
    """Set the pool gauges to this process's pool (zero while it is closed)."""
    size, in_use = pool_usage() or (0, 0)
    DB_POOL_SIZE.set(size)
    DB_POOL_IN_USE.set(in_use)


def _require_bearer_token(token: str) -> Guard:
    """A guard that lets a request through only with ``Authorization: Bearer <token>``."""
    expected = token.encode()

    def require_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        scheme, _separator, credentials = connection.headers.get("authorization", "").partition(" ")
        # Constant time: the comparison must not tell a caller how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), expected):
            raise NotAuthorizedException("The metrics require a valid bearer token.")

    return require_token


class MetricsPlugin(InitPlugin):
    """Adds ``GET /metrics`` (Prometheus text format) and keeps this worker's pool gauges current.

    The route is not in the OpenAPI document; with ``token`` it answers 401 (problem+json) unless
    that bearer token is sent. Authentication and rate limiting skip it through the app's excluded
    paths.
    """

    def __init__(self, *, token: str | None) -> None:
        self._guards = [_require_bearer_token(token)] if token else []
        self._reporter: asyncio.Task[None] | None = None

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.append(
            Router("/", guards=self._guards, before_request=_prepare_scrape, route_handlers=[_MetricsController])
        )
        app_config.on_startup.append(self._start_reporting)
        app_config.on_shutdown.append(self._stop_reporting)
        return app_config

    async def _report_periodically(self) -> None:
        while True:
            flush_metrics()
            report_pool_usage()
            await asyncio.sleep(_FLUSH_SECONDS)

    def _start_reporting(self) -> None:
        self._reporter = asyncio.get_running_loop().create_task(self._report_periodically())

    async def _stop_reporting(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
            self._reporter = None
        flush_metrics()
        report_pool_usage()
        directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
        if directory is not None:
            # This worker's connections no longer count; its counters stay in the totals.
            multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]  # unannotated upstream
