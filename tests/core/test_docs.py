"""The docs page with Scalar's bundle served by the service itself (BOOKSTORE_DOCS_ASSETS_DIR): the
page loads it from this origin, the route serves it as JavaScript, and the page's CSP lets it and
the page's inline scripts run and nothing else. That it renders in a browser: tests/test_docs_browser.py."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from bookstore.app import create_app
from bookstore.core.docs import DOCS_ASSETS_PATH, SCALAR_VERSION
from tests.conftest import make_settings

BUNDLE = b"window.scalarLoaded = true;\n"
BUNDLE_PATH = f"{DOCS_ASSETS_PATH}/standalone.js"
# Inline <script> elements (no src): what a CSP must allow by hash.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)


def csp_of(response: httpx.Response) -> dict[str, list[str]]:
    directives = (part.split() for part in response.headers["content-security-policy"].split(";"))
    return {name: sources for name, *sources in directives}


def sha256_source(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


@pytest.fixture
def assets_dir(tmp_path: Path) -> Path:
    (tmp_path / "standalone.js").write_bytes(BUNDLE)
    (tmp_path / "LICENSE").write_text("MIT")
    return tmp_path


@pytest.fixture
async def http(app: Litestar, assets_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app serving the bundle in ``assets_dir`` (sharing the session's database pool)."""
    local = create_app(make_settings(docs_assets_dir=assets_dir))
    transport = httpx.ASGITransport(app=local, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def cdn_http(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An app loading the bundle from the pinned CDN URL (the default)."""
    transport = httpx.ASGITransport(app=create_app(make_settings()), client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_the_page_loads_the_bundle_from_this_service(http: httpx.AsyncClient) -> None:
    page = await http.get("/docs")
    assert page.status_code == 200
    assert re.findall(r'<script src="([^"]+)"', page.text) == [BUNDLE_PATH]
    # Nothing else leaves the origin either: no CDN stylesheet or favicon.
    assert "https://" not in page.text


async def test_the_bundle_is_served_as_javascript(http: httpx.AsyncClient) -> None:
    response = await http.get(BUNDLE_PATH)
    assert response.status_code == 200
    assert response.content == BUNDLE
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "public, max-age=3600"


async def test_the_bundle_is_revalidated_by_its_etag(http: httpx.AsyncClient) -> None:
    etag = (await http.get(BUNDLE_PATH)).headers["etag"]
    revalidated = await http.get(BUNDLE_PATH, headers={"If-None-Match": etag})
    assert revalidated.status_code == 304
    assert revalidated.content == b""
    assert revalidated.headers["etag"] == etag


async def test_a_bundle_gone_since_start_up_is_a_clear_503(http: httpx.AsyncClient, assets_dir: Path) -> None:
    (assets_dir / "standalone.js").rename(assets_dir / "moved.js")
    response = await http.get(BUNDLE_PATH)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "scripts/fetch-scalar" in response.json()["detail"]


async def test_only_the_bundle_of_the_directory_is_served(http: httpx.AsyncClient) -> None:
    assert (await http.get(f"{DOCS_ASSETS_PATH}/LICENSE")).status_code == 404


async def test_the_bundle_needs_no_token(http: httpx.AsyncClient) -> None:
    """Excluded from JWT auth like the page itself: a browser sends no bearer token for a script."""
    response = await http.get(BUNDLE_PATH, headers={"authorization": "Bearer not-a-token"})
    assert response.status_code == 200


async def test_the_page_policy_allows_its_own_scripts_and_no_other(http: httpx.AsyncClient) -> None:
    page = await http.get("/docs")
    policy = csp_of(page)
    inline = INLINE_SCRIPT.findall(page.text)
    # The empty data-carrying tag and the options script; Scalar without its default fonts.
    assert len(inline) == 2
    assert "withDefaultFonts" in inline[1]
    assert sorted(policy["script-src"]) == sorted(["'self'", *(sha256_source(text) for text in inline)])
    assert policy["default-src"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert all(not source.startswith("https:") for sources in policy.values() for source in sources)


async def test_the_cdn_page_allows_its_inline_scripts_by_hash(cdn_http: httpx.AsyncClient) -> None:
    page = await cdn_http.get("/docs")
    policy = csp_of(page)
    assert policy["script-src"][0] == f"https://cdn.jsdelivr.net/npm/@scalar/api-reference@{SCALAR_VERSION}"
    assert sorted(policy["script-src"][1:]) == sorted(sha256_source(text) for text in INLINE_SCRIPT.findall(page.text))
