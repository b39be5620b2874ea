"""Prometheus metrics: what each series counts, ``GET /metrics`` (token, OpenAPI, limits) in process,
the per-run directory of ``bookstore serve``, and the sums over the workers of a real
``bookstore serve --workers 2``."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from bookstore.core.database import pool_usage, transaction
from bookstore.core.metrics import (
    METRICS_PATH,
    MULTIPROCESS_DIR_VARIABLE,
    UNMATCHED_PATH,
    multiprocess_directory,
    observe_request,
)
from bookstore.testing import free_port
from tests.helpers import PASSWORD, ApiClient, assert_problem, bearer, unique_email
from tests.servers import BookstoreProcess

MakeClient = Callable[..., Awaitable[ApiClient]]
TOKEN = "metrics-token-" + "t" * 24
BOOKS = "/api/v1/books"
LOGIN = "/api/v1/auth/login"
TOKEN = "/api/v1/auth/token"
REQUESTS = "bookstore_http_requests_total"
DURATION_FAMILY = "bookstore_http_request_duration_seconds"
DURATIONS = f"{DURATION_FAMILY}_count"
DECISIONS = "bookstore_rate_limit_decisions_total"
LOGINS = "bookstore_logins_total"
REUSE = "bookstore_refresh_token_reuse_total"
POOL = "bookstore_db_pool_connections"
# Every wait for a value in another process is bounded by this.
WAIT_SECONDS = 10.0


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the series ``name{labels}`` in an exposition ``text``; 0 when it is absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


async def scrape(client: httpx.AsyncClient | ApiClient, token: str | None = None) -> str:
    response = await client.get(METRICS_PATH, headers=bearer(token) if token else None)
    assert response.status_code == 200, response.text
    return response.text


# --- what is counted --------------------------------------------------------------------------------


async def test_requests_are_counted_by_method_path_template_and_status(client: ApiClient) -> None:
    path = {"method": "GET", "path": f"{BOOKS}/{{book_id}}"}
    before = await scrape(client)
    for book_id in (999_001, 999_002, 999_003):
        assert (await client.get(f"{BOOKS}/{book_id}")).status_code == 404
    after = await scrape(client)
    assert sample(after, REQUESTS, **path, status="404") - sample(before, REQUESTS, **path, status="404") == 3
    assert sample(after, DURATIONS, **path) - sample(before, DURATIONS, **path) == 3
    # Never the raw path: ids would make a series each.
    assert "999001" not in after


async def test_unrouted_requests_share_one_series(client: ApiClient) -> None:
    labels = {"method": "GET", "path": UNMATCHED_PATH, "status": "404"}
    before = sample(await scrape(client), REQUESTS, **labels)
    assert (await client.get("/no/such/route")).status_code == 404
    text = await scrape(client)
    assert sample(text, REQUESTS, **labels) == before + 1
    assert "/no/such/route" not in text


async def test_methods_a_client_makes_up_are_counted_as_other(client: ApiClient) -> None:
    labels = {"path": UNMATCHED_PATH, "status": "405"}
    before = sample(await scrape(client), REQUESTS, method="OTHER", **labels)
    observe_request("BREW", UNMATCHED_PATH, 405, 0.001)
    observe_request("PROPFIND", UNMATCHED_PATH, 405, 0.001)
    text = await scrape(client)
    assert sample(text, REQUESTS, method="OTHER", **labels) == before + 2
    assert "BREW" not in text


async def test_a_scrape_shows_each_duration_in_the_bucket_observing_it_would_choose(client: ApiClient) -> None:
    # Requests are tallied in plain Python and added to the histogram in batches: its buckets and sum
    # must read as if every request had been observed on its own.
    labels = {"method": "GET", "path": "/test-only/tallied"}
    durations = [0.001, 0.0025, 0.0026, 0.05, 0.3, 5.0, 42.0]
    for seconds in durations:
        observe_request("GET", labels["path"], 200, seconds)
    text = await scrape(client)
    [family] = [family for family in text_string_to_metric_families(text) if family.name == DURATION_FAMILY]
    buckets = {
        float(found.labels["le"]): found.value
        for found in family.samples
        if found.name.endswith("_bucket") and found.labels["method"] == "GET" and found.labels["path"] == labels["path"]
    }
    assert len(buckets) == 12
    for upper_bound, count in buckets.items():
        assert count == sum(seconds <= upper_bound for seconds in durations), upper_bound
    assert sample(text, f"{DURATION_FAMILY}_sum", **labels) == pytest.approx(sum(durations))
    assert sample(text, REQUESTS, **labels, status="200") == len(durations)


async def test_scrapes_are_not_counted(client: ApiClient) -> None:
    await scrape(client)
    observe_request("GET", METRICS_PATH, 200, 0.001)
    assert f'path="{METRICS_PATH}"' not in await scrape(client)


async def test_rate_limit_decisions_are_counted(client: ApiClient, make_client: MakeClient) -> None:
    limited = await make_client(rate_limit_requests=2, rate_limit_window_seconds=60)
    before = await scrape(client)
    assert [(await limited.get(BOOKS)).status_code for _ in range(3)] == [200, 200, 429]
    after = await scrape(client)
    for decision, count in (("allowed", 2), ("limited", 1), ("store_unreachable", 0)):
        assert sample(after, DECISIONS, decision=decision) - sample(before, DECISIONS, decision=decision) == count


async def test_an_unreachable_rate_limit_store_is_counted(client: ApiClient, make_client: MakeClient) -> None:
    unreachable = await make_client(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    before = sample(await scrape(client), DECISIONS, decision="store_unreachable")
    # Reads fail open, logins fail closed: both are decisions taken without the store.
    assert (await unreachable.get(BOOKS)).status_code == 200
    assert (await unreachable.post(LOGIN, json={"email": unique_email(), "password": PASSWORD})).status_code == 503
    assert sample(await scrape(client), DECISIONS, decision="store_unreachable") == before + 2


async def test_login_outcomes_are_counted(client: ApiClient) -> None:
    before = await scrape(client)
    account = await client.account()
    wrong_password = {"email": account.email, "password": PASSWORD + "!"}
    assert (await client.post(LOGIN, json=wrong_password)).status_code == 401
    assert (await client.post(LOGIN, json={"email": unique_email(), "password": PASSWORD})).status_code == 401
    # The OAuth2 form route counts into the same series.
    assert (await client.post(TOKEN, data={"username": account.email, "password": PASSWORD})).status_code == 200
    assert (await client.post(TOKEN, data={"username": account.email, "password": "wrong!!!"})).status_code == 401
    after = await scrape(client)
    for outcome, count in (("success", 2), ("failure", 3), ("limited", 0)):
        assert sample(after, LOGINS, outcome=outcome) - sample(before, LOGINS, outcome=outcome) == count


@pytest.mark.parametrize("limit", ["login_rate_limit_per_ip", "login_rate_limit_per_email"])
async def test_logins_refused_by_a_limit_are_counted_as_limited(
    client: ApiClient, make_client: MakeClient, limit: str
) -> None:
    limited = await make_client(**{limit: 1})
    credentials = {"email": unique_email(), "password": PASSWORD}
    before = await scrape(client)
    assert (await limited.post(LOGIN, json=credentials)).status_code == 401
    # Both login routes share the limits: a second attempt by form is refused.
    form = {"username": credentials["email"], "password": PASSWORD}
    assert (await limited.post(TOKEN, data=form)).status_code == 429
    after = await scrape(client)
    for outcome, count in (("failure", 1), ("limited", 1), ("success", 0)):
        assert sample(after, LOGINS, outcome=outcome) - sample(before, LOGINS, outcome=outcome) == count


async def test_a_reused_refresh_token_is_counted(client: ApiClient) -> None:
    account = await client.account()
    before = sample(await scrape(client), REUSE)
    refresh = {"refresh_token": account.refresh_token}
    assert (await client.post("/api/v1/auth/refresh", json=refresh)).status_code == 200
    assert sample(await scrape(client), REUSE) == before
    assert (await client.post("/api/v1/auth/refresh", json=refresh)).status_code == 401
    assert sample(await scrape(client), REUSE) == before + 1


async def test_the_pool_gauges_show_the_pool_at_scrape_time(client: ApiClient) -> None:
    async with transaction():
        during = await scrape(client)
    after = await scrape(client)
    usage = pool_usage()
    assert usage is not None
    assert sample(during, POOL, state="in_use") == 1
    assert sample(after, POOL, state="in_use") == 0
    assert sample(after, POOL, state="size") == usage[0] >= 1


# --- the route ---------------------------------------------------------------------------------------


def test_metrics_is_not_in_the_openapi_document(app: Litestar) -> None:
    assert app.openapi_schema.paths is not None
    assert METRICS_PATH not in app.openapi_schema.paths


async def test_metrics_answers_in_the_prometheus_text_format(client: ApiClient) -> None:
    response = await client.get(METRICS_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert "# TYPE bookstore_http_requests_total counter" in response.text


async def test_metrics_is_neither_rate_limited_nor_behind_jwt(make_client: MakeClient) -> None:
    limited = await make_client(rate_limit_requests=1, rate_limit_window_seconds=60)
    assert [(await limited.get(BOOKS)).status_code for _ in range(2)] == [200, 429]
    responses = [await limited.get(METRICS_PATH) for _ in range(3)]
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert all("ratelimit-limit" not in response.headers for response in responses)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-of-some-length", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "],
    ids=["none", "wrong", "longer", "other-scheme", "no-scheme", "empty"],
)
async def test_a_metrics_token_refuses_requests_without_it(make_client: MakeClient, authorization: str | None) -> None:
    guarded = await make_client(metrics_token=TOKEN)
    headers = {"Authorization": authorization} if authorization is not None else None
    response = await guarded.get(METRICS_PATH, headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "bookstore_" not in response.text


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
async def test_a_metrics_token_lets_its_bearer_in(make_client: MakeClient, scheme: str) -> None:
    guarded = await make_client(metrics_token=TOKEN)
    response = await guarded.get(METRICS_PATH, headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.status_code == 200
    assert "bookstore_http_requests_total" in response.text


# --- the directory of `bookstore serve` ----------------------------------------------------------------


def test_serve_gets_a_new_metrics_directory_removed_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_DIR_VARIABLE, raising=False)
    with multiprocess_directory() as directory:
        assert os.environ[MULTIPROCESS_DIR_VARIABLE] == str(directory)
        assert list(directory.iterdir()) == []
        (directory / "counter_123.db").write_bytes(b"\0" * 8)
    assert not directory.exists()
    assert MULTIPROCESS_DIR_VARIABLE not in os.environ


def test_a_configured_metrics_directory_is_emptied_before_and_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured = tmp_path / "metrics"
    configured.mkdir()
    (configured / "counter_123.db").write_bytes(b"\0" * 8)
    (configured / "README").write_text("not a metrics file")
    monkeypatch.setenv(MULTIPROCESS_DIR_VARIABLE, str(configured))
    with multiprocess_directory() as directory:
        assert directory == configured
        assert sorted(path.name for path in directory.iterdir()) == ["README"]
        (directory / "counter_456.db").write_bytes(b"\0" * 8)
    assert sorted(path.name for path in configured.iterdir()) == ["README"]
    assert os.environ[MULTIPROCESS_DIR_VARIABLE] == str(configured)


# --- a real `bookstore serve --workers 2` --------------------------------------------------------------


def serve_metrics(directory: Path, *, workers: int) -> BookstoreProcess:
    """``bookstore serve`` with the metrics token, its temporary files under ``directory / "tmp"``."""
    (directory / "tmp").mkdir()
    environment = {"BOOKSTORE_METRICS_TOKEN": TOKEN, "TMPDIR": str(directory / "tmp")}
    return BookstoreProcess(directory, workers=workers, env=environment)


def metrics_directory_of(server: BookstoreProcess) -> Path:
    """The multiprocess directory ``bookstore serve`` made for its workers.

    Found in its TMPDIR: Granian rewrites its processes' titles over their environment in /proc.
    """
    [directory] = Path(server.env["TMPDIR"]).glob("bookstore-metrics-*")
    return directory


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookstoreProcess]:
    server = serve_metrics(tmp_path_factory.mktemp("metrics"), workers=2)
    yield server
    server.stop()


def workers_that_allowed_requests(directory: Path) -> int:
    """How many workers' own files count requests the rate limiter allowed."""
    workers = 0
    for path in directory.glob("counter_*.db"):
        samples = [found for metric in MultiProcessCollector.merge([str(path)]) for found in metric.samples]
        workers += any(
            found.name == DECISIONS and found.labels == {"decision": "allowed"} and found.value for found in samples
        )
    return workers


async def wait_for_sample(http: httpx.AsyncClient, name: str, done: Callable[[float], bool], **labels: str) -> float:
    """Scrape until the value of ``name{labels}`` is ``done`` (a worker counts a request just after
    answering it, and reports its pool as it starts) or ``WAIT_SECONDS`` pass; the last value read."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = sample(await scrape(http, TOKEN), name, **labels)
        if done(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)  # polling, bounded by the deadline


def pid_of_an_ended_process() -> int:
    """A pid that no process has (any more): that of a program that has run and exited."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    return ended.pid


async def test_the_counters_sum_the_requests_of_every_worker(two_workers: BookstoreProcess) -> None:
    directory = metrics_directory_of(two_workers)
    limits = httpx.Limits(max_keepalive_connections=0)  # a new connection per request: any worker may take it
    async with httpx.AsyncClient(base_url=two_workers.base_url, limits=limits, timeout=10) as http:
        sent, deadline = 0, time.monotonic() + WAIT_SECONDS
        # Until both workers have answered some: their files, summed by the scrape, must give the total.
        while workers_that_allowed_requests(directory) < 2 and time.monotonic() < deadline:
            responses = await asyncio.gather(*(http.get(BOOKS) for _ in range(20)))
            assert [response.status_code for response in responses] == [200] * 20
            sent += 20
        assert workers_that_allowed_requests(directory) == 2
        labels = {"method": "GET", "path": BOOKS}

        def all_sent(value: float) -> bool:
            return value == sent

        assert await wait_for_sample(http, REQUESTS, all_sent, **labels, status="200") == sent
        assert await wait_for_sample(http, DURATIONS, all_sent, **labels) == sent
        # Only the API requests are rate-limited: the scrapes and readiness probes are not.
        assert await wait_for_sample(http, DECISIONS, all_sent, decision="allowed") == sent


async def test_the_live_metrics_need_the_token(two_workers: BookstoreProcess) -> None:
    async with httpx.AsyncClient(base_url=two_workers.base_url, timeout=10) as http:
        assert_problem(await http.get(METRICS_PATH), 401)
        assert_problem(await http.get(METRICS_PATH, headers=bearer(TOKEN[:-1] + "x")), 401)
        response = await http.get(METRICS_PATH, headers=bearer(TOKEN))
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST


async def test_the_pool_gauges_count_live_workers_only(two_workers: BookstoreProcess) -> None:
    directory = metrics_directory_of(two_workers)
    async with httpx.AsyncClient(base_url=two_workers.base_url, timeout=10) as http:
        # Each worker reports its pool as it starts: at least one connection each.
        size = await wait_for_sample(http, POOL, lambda value: value >= 2, state="size")
        assert size >= 2
        # A worker that died without cleaning up (killed) leaves its gauge file behind.
        dead_file = directory / f"gauge_livesum_{pid_of_an_ended_process()}.db"
        shutil.copy(next(directory.glob("gauge_livesum_*.db")), dead_file)
        assert sample(await scrape(http, TOKEN), POOL, state="size") == size
    assert not dead_file.exists()


def test_serve_removes_its_metrics_directory_when_it_exits(tmp_path: Path) -> None:
    server = serve_metrics(tmp_path, workers=1)
    try:
        directory = metrics_directory_of(server)
        assert list(directory.glob("counter_*.db")) != []
    finally:
        server.stop()
    assert not directory.exists()
