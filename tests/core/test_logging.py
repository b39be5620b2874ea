"""Log lines: JSON or console format, the request id on every line of a request (stdlib, structlog
and unhandled-error lines alike), the access line, the formatter Granian receives, and a live
``bookstore serve`` that never logs a password, a token or an Authorization or Cookie header."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from litestar import Litestar, get
from litestar.params import FromPath
from litestar_granian.logging import build_logging_config, load_serialized_formatter

from tests.core.test_observability import build_app, client_of
from tests.helpers import PASSWORD, bearer, unique_email
from tests.servers import BookstoreProcess

NOISY = "/test-only/noisy/{number:int}"
# A value only a failing handler's local variable holds: a traceback that printed locals would show it.
FRAME_LOCAL_SECRET = "frame-local-password-7f3a"
ACCESS_LINE_KEYS = {"timestamp", "level", "logger", "event", "request_id", "method", "path", "status", "duration_ms"}


@get(NOISY, exclude_from_auth=True, sync_to_thread=False)
def noisy(number: FromPath[int]) -> None:
    """Logs through a stdlib logger, a library's logger and structlog, then fails: test apps only."""
    logging.getLogger("bookstore.books").info("about to fail %d", number)
    logging.getLogger("asyncpg").warning("a library speaks")
    structlog.get_logger("bookstore.test").info("structlog speaks", number=number)
    _password_in_scope = FRAME_LOCAL_SECRET
    raise RuntimeError("a bug")


def noisy_app(**overrides: Any) -> Litestar:
    app = build_app(**overrides)
    app.register(noisy)
    return app


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Every line as JSON (a line that is not fails the test), but httpx's: the test client's."""
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [line for line in lines if line.get("logger") != "httpx"]


def _access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("logger") == "bookstore.access"]


@pytest.fixture
def fresh_output(capfd: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str]:
    """What the process writes to stdout and stderr from now on."""
    capfd.readouterr()
    return capfd


# --- the request id on every line -----------------------------------------------------------------


async def test_every_json_line_of_a_request_carries_its_id(capfd: pytest.CaptureFixture[str]) -> None:
    observed = noisy_app(log_format="json")
    capfd.readouterr()
    async with client_of(observed) as http:
        response = await http.get("/test-only/noisy/7?token=secret-query")
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    lines = parse_lines(capfd.readouterr().err)
    assert {line["event"] for line in lines} == {
        "about to fail 7",
        "a library speaks",
        "structlog speaks",
        "unhandled error",
        "request",
    }
    assert [line["request_id"] for line in lines] == [request_id] * len(lines)
    error = next(line for line in lines if line["event"] == "unhandled error")
    assert error["level"] == "ERROR"
    assert error["logger"] == "bookstore.errors"
    assert error["exception"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: a bug" in error["exception"]
    assert response.json()["request_id"] == request_id


async def test_console_lines_carry_the_request_id_too(capfd: pytest.CaptureFixture[str]) -> None:
    observed = noisy_app(log_format="console")
    capfd.readouterr()
    async with client_of(observed) as http:
        response = await http.get("/test-only/noisy/8")
    output = capfd.readouterr().err
    request_id = response.headers["x-request-id"]
    error_line = next(line for line in output.splitlines() if "unhandled error" in line)
    assert "[ERROR" in error_line
    assert f"request_id={request_id}" in error_line
    assert "RuntimeError: a bug" in output
    assert FRAME_LOCAL_SECRET not in output
    access_line = next(line for line in output.splitlines() if "[bookstore.access]" in line)
    assert f"request_id={request_id}" in access_line
    assert f"path={NOISY.replace(':int', '')}" in access_line
    assert "status=500" in access_line


def test_lines_outside_a_request_have_no_request_id(fresh_output: pytest.CaptureFixture[str]) -> None:
    build_app(log_format="json")
    logging.getLogger("bookstore.startup").warning("between requests")
    [line] = parse_lines(fresh_output.readouterr().err)
    assert line["event"] == "between requests"
    assert line["level"] == "WARNING"
    assert line["logger"] == "bookstore.startup"
    assert "request_id" not in line


# --- the access line ------------------------------------------------------------------------------


async def test_the_access_line_names_the_route_template_never_the_raw_path(
    app: Litestar, capfd: pytest.CaptureFixture[str]
) -> None:
    observed = build_app(log_format="json")
    capfd.readouterr()
    async with client_of(observed) as http:
        response = await http.get("/api/v1/books/424242?secret=query-value", headers={"Authorization": "Bearer abc"})
        head = await http.head("/api/v1/books/424243")
    lines = parse_lines(capfd.readouterr().err)
    assert "424242" not in str(lines)
    assert "query-value" not in str(lines)
    first, second = _access_lines(lines)
    assert set(first) == ACCESS_LINE_KEYS
    assert first["level"] == "INFO"
    assert first["event"] == "request"
    assert first["request_id"] == response.headers["x-request-id"]
    assert (first["method"], first["path"], first["status"]) == ("GET", "/api/v1/books/{book_id}", 404)
    assert isinstance(first["duration_ms"], float)
    assert first["duration_ms"] > 0
    assert datetime.fromisoformat(first["timestamp"]).utcoffset() is not None
    assert (second["method"], second["path"], second["status"]) == ("HEAD", "/api/v1/books/{book_id}", 404)
    assert second["request_id"] == head.headers["x-request-id"]


async def test_unrouted_requests_are_logged_as_unmatched(capfd: pytest.CaptureFixture[str]) -> None:
    observed = build_app(log_format="json")
    capfd.readouterr()
    async with client_of(observed) as http:
        await http.get("/wp-admin/install.php")
    [line] = _access_lines(parse_lines(capfd.readouterr().err))
    assert (line["path"], line["status"]) == ("<unmatched>", 404)


async def test_a_made_up_method_is_logged_as_other(capfd: pytest.CaptureFixture[str]) -> None:
    # Granian passes on any token as the method, hundreds of KB long: logged as sent, one request
    # could write a line longer than a pipe writes atomically, and flood the logs.
    observed = build_app(log_format="json")
    capfd.readouterr()
    async with client_of(observed) as http:
        response = await http.request("A" * 10_000, "/api/v1/books")
    [line] = _access_lines(parse_lines(capfd.readouterr().err))
    assert line["method"] == "OTHER"
    assert line["status"] == response.status_code == 405


@pytest.mark.parametrize(
    "overrides", [{"access_log": False}, {"log_level": "WARNING"}], ids=["switched off", "level above INFO"]
)
async def test_no_access_line_when_switched_off(capfd: pytest.CaptureFixture[str], overrides: dict[str, Any]) -> None:
    observed = noisy_app(log_format="json", **overrides)
    capfd.readouterr()
    async with client_of(observed) as http:
        assert (await http.get("/health")).status_code == 200
        failed = await http.get("/test-only/noisy/9")
    lines = parse_lines(capfd.readouterr().err)
    assert _access_lines(lines) == []
    # Other lines still are written, with their request's id.
    assert [line["request_id"] for line in lines if line["event"] == "unhandled error"] == [
        failed.headers["x-request-id"]
    ]


# --- the formatter handed to Granian --------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_granian_gets_the_same_formatter(fresh_output: pytest.CaptureFixture[str], log_format: str) -> None:
    """litestar-granian pickles the active formatter for Granian's own lines (a lambda or closure
    in it would stop `bookstore serve` from starting)."""
    observed = build_app(log_format=log_format)
    config = build_logging_config(observed.logging_config)
    assert config is not None
    payload = config["formatters"]["generic"]["payload"]
    formatter = load_serialized_formatter(payload)
    assert isinstance(formatter, structlog.stdlib.ProcessorFormatter)
    record = logging.LogRecord("_granian", logging.INFO, __file__, 1, "Starting granian", None, None)
    rendered = formatter.format(record)
    if log_format == "json":
        line = json.loads(rendered)
        assert (line["event"], line["level"], line["logger"]) == ("Starting granian", "INFO", "_granian")
    else:
        assert re.search(r"\[INFO\s*\] Starting granian", rendered)


# --- a live server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookstoreProcess]:
    directory: Path = tmp_path_factory.mktemp("logging")
    # Production's format, at the most talkative level.
    server = BookstoreProcess(
        directory, env={"BOOKSTORE_LOG_FORMAT": "json", "BOOKSTORE_LOG_LEVEL": "DEBUG", "PYTHONUNBUFFERED": "1"}
    )
    try:
        yield server
    finally:
        server.stop()


def _secret_parts(token: str) -> list[str]:
    """The token and each of its parts long enough to identify it (a JWT's header is shared)."""
    return [token, *(part for part in token.split(".") if len(part) >= 24 and not part.startswith("eyJhbGci"))]


def test_a_live_server_never_logs_passwords_tokens_or_credentials_headers(server: BookstoreProcess) -> None:
    email, wrong_password, cookie = unique_email(), "wrong-horse-battery-staple", "session-cookie-value-4b1d"
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        assert http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
        login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200
        tokens = login.json()
        me = http.get("/api/v1/users/me", headers={**bearer(tokens["access_token"]), "Cookie": f"session={cookie}"})
        assert me.status_code == 200
        refreshed = http.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        failed = http.post("/api/v1/auth/login", json={"email": email, "password": wrong_password})
        assert failed.status_code == 401
        form = http.post("/api/v1/auth/token", data={"username": email, "password": wrong_password})
        assert form.status_code == 401
        request_ids = [response.headers["x-request-id"] for response in (login, me, refreshed, failed, form)]
    server.stop()  # everything is written out
    output = server.output()

    # The requests were logged (the scan below reads real lines) ...
    logged = {
        line["request_id"]: line
        for line in map(json.loads, (text for text in output.splitlines() if text.startswith('{"timestamp"')))
        if line.get("logger") == "bookstore.access"
    }
    assert [logged[request_id]["status"] for request_id in request_ids] == [200, 200, 200, 401, 401]
    assert logged[request_ids[3]]["path"] == "/api/v1/auth/login"
    # ... and nothing secret was.
    secrets = [PASSWORD, wrong_password, cookie]
    for token in (*tokens.values(), *refreshed.json().values()):
        if isinstance(token, str) and len(token) >= 24:
            secrets.extend(_secret_parts(token))
    assert [secret for secret in secrets if secret in output] == []
    assert "authorization" not in output.lower()
    assert "bearer" not in output.lower()
    assert "cookie" not in output.lower()
