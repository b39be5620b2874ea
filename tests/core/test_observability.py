"""The outermost wrapper (RequestObserver) and CORS, in process: request ids, security headers on
every kind of response, metrics labelled by route, and cross-origin preflights."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from litestar import Litestar, get
from prometheus_client import REGISTRY

from bookstore.app import create_app
from bookstore.core.metrics import flush_metrics
from tests.conftest import make_settings
from tests.helpers import PASSWORD, assert_problem, bearer, book_payload, unique_email

BOOKS = "/api/v1/books"
ME = "/api/v1/users/me"
BROKEN = "/test-only/broken"
PEER = "127.0.0.1"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
APP_ORIGIN = "https://app.example.com"


@get(BROKEN, exclude_from_auth=True, sync_to_thread=False)
def broken() -> None:
    """A route that fails unexpectedly: registered on test apps only."""
    raise RuntimeError("a bug")


def build_app(**overrides: Any) -> Litestar:
    app = create_app(make_settings(**overrides))
    app.register(broken)
    return app


@asynccontextmanager
async def client_of(app: Litestar, peer: str = PEER) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def observed(app: Litestar) -> Litestar:
    """An app of its own (with the broken route), sharing the session's database pool."""
    return build_app()


# --- request ids ----------------------------------------------------------------------------------


async def test_each_request_gets_a_new_id_in_its_response(observed: Litestar) -> None:
    async with client_of(observed) as http:
        first, second = (await http.get("/health"), await http.get("/health"))
    assert GENERATED_ID.fullmatch(first.headers["x-request-id"])
    assert GENERATED_ID.fullmatch(second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_trusted_proxy_passes_its_request_id_on() -> None:
    app = build_app(trusted_proxies=("127.0.0.0/8",))
    async with client_of(app) as http:
        response = await http.get("/health", headers={"X-Request-ID": "edge-7f3a:01.b_c-d"})
    assert response.headers["x-request-id"] == "edge-7f3a:01.b_c-d"


@pytest.mark.parametrize("trusted_proxies", [(), ("10.0.0.0/8",)], ids=["no proxies", "another proxy"])
async def test_a_request_id_from_any_other_peer_is_replaced(trusted_proxies: tuple[str, ...]) -> None:
    app = build_app(trusted_proxies=trusted_proxies)
    async with client_of(app) as http:
        response = await http.get("/health", headers={"X-Request-ID": "chosen-by-the-client"})
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


@pytest.mark.parametrize(
    "request_id",
    ["", "has space", "semi;colon", 'quote"d', "new\\nline", "ünïcode", "x" * 129],
    ids=["empty", "space", "semicolon", "quote", "escape", "non-ascii", "too long"],
)
async def test_an_unsafe_request_id_from_a_trusted_proxy_is_replaced(request_id: str) -> None:
    app = build_app(trusted_proxies=("127.0.0.1",))
    async with client_of(app) as http:
        response = await http.get("/health", headers={"X-Request-ID": request_id.encode()})
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


async def test_the_longest_safe_request_id_is_kept() -> None:
    app = build_app(trusted_proxies=("127.0.0.1",))
    async with client_of(app) as http:
        response = await http.get("/health", headers={"X-Request-ID": "a" * 128})
    assert response.headers["x-request-id"] == "a" * 128


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/nowhere", {}, 404),
        ("GET", f"{BOOKS}/not-a-number", {}, 404),
        ("DELETE", "/health", {}, 405),
        ("GET", ME, {}, 401),
        ("GET", f"{BOOKS}?limit=0", {}, 400),
        (
            "POST",
            "/api/v1/auth/register",
            {"content": b"{" * 70_000, "headers": {"content-type": "application/json"}},
            413,
        ),
        ("GET", BROKEN, {}, 500),
    ],
    ids=["404 routing", "404 converter", "405", "401", "400", "413", "500"],
)
async def test_every_problem_body_names_its_request_id(
    observed: Litestar, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    async with client_of(observed) as http:
        response = await http.request(method, path, **kwargs)
    problem = assert_problem(response, status)
    assert problem["request_id"] == response.headers["x-request-id"]


# --- security headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/health", {}, 200),
        ("HEAD", "/health", {}, 200),
        ("GET", "/nowhere", {}, 404),
        ("DELETE", "/health", {}, 405),
        (
            "POST",
            "/api/v1/auth/register",
            {"content": b"{" * 70_000, "headers": {"content-type": "application/json"}},
            413,
        ),
        ("GET", ME, {}, 401),
        ("GET", BROKEN, {}, 500),
        ("OPTIONS", BOOKS, {}, 204),
    ],
    ids=["200", "HEAD", "404", "405", "413", "401", "500", "OPTIONS"],
)
async def test_every_response_carries_the_security_headers(
    observed: Litestar, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    async with client_of(observed) as http:
        response = await http.request(method, path, **kwargs)
    assert response.status_code == status
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert response.headers["content-security-policy"] == API_POLICY
    assert "strict-transport-security" not in response.headers
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


async def test_an_answer_closing_the_connection_carries_them_too(observed: Litestar) -> None:
    # Refused before its (too large) body is read: the body guard closes the connection, and the
    # observer, outside the guard, still heads the answer.
    async with client_of(observed) as http:
        response = await http.post(BOOKS, content=b"x" * 70_000, headers={"content-type": "application/json"})
    assert response.status_code == 401
    assert response.headers["connection"] == "close"
    assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert GENERATED_ID.fullmatch(response.headers["x-request-id"])


async def test_the_docs_page_has_its_own_content_security_policy(observed: Litestar) -> None:
    async with client_of(observed) as http:
        page, document = await http.get("/docs"), await http.get("/docs/openapi.json")
    assert page.status_code == 200
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    # The page's own script, pinned: not any script the CDN hosts; its inline scripts by hash only.
    script = re.search(r'<script src="([^"]+)"', page.text)
    assert script
    assert policy["script-src"].split()[0] == script.group(1)
    assert all(source.startswith("'sha256-") for source in policy["script-src"].split()[1:])
    stylesheet = re.search(r'<link rel="stylesheet" type="text/css" href="([^"]+)"', page.text)
    assert stylesheet
    assert stylesheet.group(1) in policy["style-src"].split()
    assert policy["connect-src"] == "'self'"
    assert document.headers["content-security-policy"] == page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


async def test_hsts_is_sent_when_tls_is_terminated_in_front() -> None:
    app = build_app(hsts_seconds=31_536_000)
    async with client_of(app) as http:
        responses = [await http.get("/health"), await http.get("/nowhere")]
    assert [response.headers["strict-transport-security"] for response in responses] == ["max-age=31536000"] * 2


async def test_token_and_account_responses_are_never_stored(observed: Litestar) -> None:
    email = unique_email()
    async with client_of(observed) as http:
        registered = await http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        login = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        failed = await http.post("/api/v1/auth/login", json={"email": email, "password": "not the password"})
        tokens = login.json()
        me = await http.get(ME, headers=bearer(tokens["access_token"]))
        anonymous_me = await http.get(ME)
        head_me = await http.head(ME, headers=bearer(tokens["access_token"]))
        book = await http.post(BOOKS, json=book_payload(), headers=bearer(tokens["access_token"]))
    assert [registered.status_code, login.status_code, failed.status_code, me.status_code] == [201, 200, 401, 200]
    for response in (registered, login, failed, me, anonymous_me, head_me):
        # Exactly once: the auth routes' own header is not repeated.
        assert response.headers.get_list("cache-control") == ["no-store"], response.request.url
    assert book.status_code == 201
    assert "cache-control" not in book.headers


async def test_errors_routing_gives_under_private_paths_are_never_stored(observed: Litestar) -> None:
    async with client_of(observed) as http:
        responses = [
            await http.get("/api/v1/auth/login"),  # 405: a method the route has not
            await http.head("/api/v1/auth/login"),
            await http.get("/api/v1/auth/nothere"),  # 404: no route at all
            await http.get("/api/v1/users/nothere"),
            await http.get("/api/v1/nothere"),
        ]
    assert [response.status_code for response in responses] == [405, 405, 404, 404, 404]
    for response in responses[:-1]:
        assert response.headers.get_list("cache-control") == ["no-store"], response.request.url
    assert "cache-control" not in responses[-1].headers


# --- metrics labels -------------------------------------------------------------------------------


def _requests_counted(method: str, path: str, status: str) -> float:
    flush_metrics()  # what a scrape does first
    labels = {"method": method, "path": path, "status": status}
    return REGISTRY.get_sample_value("bookstore_http_requests_total", labels) or 0.0


async def test_requests_are_counted_by_route_template_head_and_unmatched_ones_too(observed: Litestar) -> None:
    template = f"{BOOKS}/{{book_id}}"
    before = {
        "GET": _requests_counted("GET", template, "404"),
        "HEAD": _requests_counted("HEAD", template, "404"),
        "unmatched": _requests_counted("GET", "<unmatched>", "404"),
    }
    async with client_of(observed) as http:
        assert (await http.get(f"{BOOKS}/987654")).status_code == 404
        assert (await http.head(f"{BOOKS}/987655")).status_code == 404
        assert (await http.get("/no/such/route")).status_code == 404
    assert _requests_counted("GET", template, "404") == before["GET"] + 1
    assert _requests_counted("HEAD", template, "404") == before["HEAD"] + 1
    assert _requests_counted("GET", "<unmatched>", "404") == before["unmatched"] + 1
    # Never a raw path: ids cannot multiply the series.
    assert _requests_counted("GET", f"{BOOKS}/987654", "404") == 0


# --- CORS -----------------------------------------------------------------------------------------


def _preflight(origin: str, method: str = "POST", headers: str = "authorization, content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


async def test_cors_is_off_by_default(observed: Litestar) -> None:
    async with client_of(observed) as http:
        preflight = await http.options(BOOKS, headers=_preflight(APP_ORIGIN))
        read = await http.get(BOOKS, headers={"Origin": APP_ORIGIN})
    assert preflight.status_code == 204
    assert read.status_code == 200
    for response in (preflight, read):
        assert not [name for name in response.headers if name.startswith("access-control-")]


async def test_a_preflight_from_an_allowed_origin_is_allowed() -> None:
    app = build_app(cors_origins=(APP_ORIGIN,))
    async with client_of(app) as http:
        response = await http.options(BOOKS, headers=_preflight(APP_ORIGIN))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert {"authorization", "content-type"} <= set(
        response.headers["access-control-allow-headers"].lower().split(", ")
    )
    assert "access-control-allow-credentials" not in response.headers
    assert "origin" in response.headers["vary"].lower()
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        (_preflight("https://evil.example"), "origin"),
        (_preflight(APP_ORIGIN, headers="x-custom-header"), "headers"),
        (_preflight(APP_ORIGIN, method="TRACE"), "method"),
    ],
    ids=["origin", "header", "method"],
)
async def test_a_refused_preflight_is_a_problem_without_cors_headers(headers: dict[str, str], refused: str) -> None:
    app = build_app(cors_origins=(APP_ORIGIN,))
    async with client_of(app) as http:
        response = await http.options(BOOKS, headers=headers)
    problem = assert_problem(response, 400)
    assert refused in problem["detail"]
    assert problem["request_id"] == response.headers["x-request-id"]
    assert int(response.headers["content-length"]) == len(response.content)
    assert "access-control-allow-origin" not in response.headers


async def test_reads_name_the_allowed_origin_and_vary_by_origin_for_every_origin() -> None:
    app = build_app(cors_origins=(APP_ORIGIN,))
    async with client_of(app) as http:
        allowed = await http.get(BOOKS, headers={"Origin": APP_ORIGIN})
        refused = await http.get(BOOKS, headers={"Origin": "https://evil.example"})
        without = await http.get(BOOKS)
    assert allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
    assert "access-control-allow-origin" not in refused.headers
    for response in (allowed, refused, without):
        assert response.status_code == 200
        # A shared cache must not hand one origin's answer to another.
        assert "origin" in response.headers["vary"].lower()


async def test_any_origin_may_read_when_all_are_allowed_but_never_with_credentials() -> None:
    app = build_app(cors_origins=("*",))
    async with client_of(app) as http:
        preflight = await http.options(BOOKS, headers=_preflight("https://anywhere.example"))
        read = await http.get(BOOKS, headers={"Origin": "https://anywhere.example", "Cookie": "session=1"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert read.status_code == 200
    for response in (preflight, read):
        assert "access-control-allow-credentials" not in response.headers
