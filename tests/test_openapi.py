"""The OpenAPI document: committed copy in sync with the code, complete, and honest about auth."""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from openapi_spec_validator import OpenAPIV31SpecValidator

from bookstore.app import DOCS_PATH, render_openapi_document
from bookstore.core.metrics import METRICS_PATH
from tests.helpers import ApiClient

COMMITTED_DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
REGENERATE = "Run `uv run bookstore openapi` to regenerate docs/openapi.json and commit it."
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
PASCAL_CASE = re.compile(r"^(?:[A-Z][a-z0-9]*)+$")

PUBLIC_OPERATIONS = {
    ("GET", "/api/v1/books"),
    ("GET", "/api/v1/books/{book_id}"),
    ("GET", "/api/v1/books/{book_id}/cover"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("GET", "/health"),
    ("GET", "/health/ready"),
}
BOOK_WRITES = {
    ("POST", "/api/v1/books"),
    ("PUT", "/api/v1/books/{book_id}"),
    ("PATCH", "/api/v1/books/{book_id}"),
    ("DELETE", "/api/v1/books/{book_id}"),
    ("PUT", "/api/v1/books/{book_id}/cover"),
    ("DELETE", "/api/v1/books/{book_id}/cover"),
}
# Probes take no parameters, no body and no credentials: no client error can happen there.
NO_CLIENT_ERRORS = {("GET", "/health"), ("GET", "/health/ready")}
# For operators' tools (Prometheus), not for API clients.
UNDOCUMENTED_ROUTES = {("GET", METRICS_PATH)}


@cache
def document() -> dict[str, Any]:
    rendered: dict[str, Any] = json.loads(render_openapi_document())
    return rendered


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def test_committed_document_is_up_to_date() -> None:
    assert COMMITTED_DOCUMENT.exists(), f"docs/openapi.json is missing. {REGENERATE}"
    assert COMMITTED_DOCUMENT.read_text() == render_openapi_document(), f"docs/openapi.json is stale. {REGENERATE}"


def test_committed_document_passes_the_openapi_spec_validator() -> None:
    # What client generators check first: a document they reject generates nothing.
    committed = json.loads(COMMITTED_DOCUMENT.read_text())
    errors = [f"{error.json_path}: {error.message}" for error in OpenAPIV31SpecValidator(committed).iter_errors()]
    assert not errors, "\n".join(errors)


def test_every_response_header_has_a_string_schema() -> None:
    # OpenAPI 3.1 requires `schema` (or `content`) on a header object; see core/openapi.documented_header.
    headers = {
        (*key, status, name): header
        for key, operation in operations().items()
        for status, response in operation["responses"].items()
        for name, header in response.get("headers", {}).items()
    }
    assert {
        ("GET", "/api/v1/books", "200", "Link"),
        ("PUT", "/api/v1/books/{book_id}/cover", "201", "Location"),
    } <= set(headers)
    for where, header in headers.items():
        assert header.get("schema") == {"type": "string"}, where


def test_rendered_document_does_not_depend_on_the_hash_seed() -> None:
    # Otherwise the committed copy matches the code only for some PYTHONHASHSEED values.
    script = (
        "import sys; from bookstore.app import render_openapi_document; sys.stdout.write(render_openapi_document())"
    )
    renderings = {}
    for seed in range(4):
        completed = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        renderings[seed] = completed.stdout
    first = renderings[0]
    differing = [seed for seed, text in renderings.items() if text != first]
    assert not differing, f"render_openapi_document() differs between PYTHONHASHSEED=0 and {differing}: " + next(
        line
        for line in difflib.unified_diff(first.splitlines(), renderings[differing[0]].splitlines(), lineterm="", n=0)
        if line.startswith("@@")
    )


def test_document_is_openapi_3_1_with_a_token_scheme() -> None:
    assert document()["openapi"].startswith("3.1")
    assert document()["security"] == [{"BearerToken": []}]
    scheme = document()["components"]["securitySchemes"]["BearerToken"]
    if scheme["type"] == "oauth2":
        # Documented as the OAuth2 password flow so the docs UI can log in: it must name the real login route.
        token_url = scheme["flows"]["password"]["tokenUrl"]
        assert ("POST", token_url) in operations(), token_url
        assert "application/x-www-form-urlencoded" in operations()["POST", token_url]["requestBody"]["content"]
    else:
        assert scheme["type"] == "http"
        assert scheme["scheme"].lower() == "bearer"


@pytest.mark.parametrize("key", sorted(operations()), ids=" ".join)
def test_operation_is_documented(key: tuple[str, str]) -> None:
    operation = operations()[key]
    assert PASCAL_CASE.fullmatch(operation.get("operationId", "")), operation.get("operationId")
    assert operation.get("summary", "").strip(), "summary missing"
    assert operation.get("tags"), "tags missing"
    statuses = {int(status) for status in operation["responses"]}
    assert any(200 <= status < 400 for status in statuses), statuses
    if key not in NO_CLIENT_ERRORS:
        assert any(400 <= status < 500 for status in statuses), f"no 4xx response documented: {sorted(statuses)}"


def test_operation_ids_are_unique() -> None:
    ids = [operation["operationId"] for operation in operations().values()]
    assert len(ids) == len(set(ids))


def test_probes_are_the_only_operations_without_client_errors() -> None:
    # Keeps the exemption above from silently growing.
    assert set(operations()) >= NO_CLIENT_ERRORS
    assert all(path.startswith("/health") for _, path in NO_CLIENT_ERRORS)


def test_public_operations_are_anonymous_and_the_rest_need_a_token() -> None:
    assert set(operations()) >= PUBLIC_OPERATIONS | BOOK_WRITES
    for key, operation in operations().items():
        if key in PUBLIC_OPERATIONS:
            assert operation.get("security") == [{}], key
        else:
            # Absent means the document-wide BearerToken requirement applies.
            assert operation.get("security", document()["security"]) == [{"BearerToken": []}], key
    for key in BOOK_WRITES:
        assert "security" not in operations()[key], key


def test_every_error_response_is_a_problem_document() -> None:
    for key, operation in operations().items():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert set(response["content"]) == {"application/problem+json"}, (key, status)


async def test_docs_page_and_document_are_served(client: ApiClient) -> None:
    page = await client.get(DOCS_PATH)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "scalar" in page.text.lower()

    served = await client.get(f"{DOCS_PATH}/openapi.json")
    assert served.status_code == 200, served.text
    assert "json" in served.headers["content-type"]
    assert served.json() == document()


def _documented(route: HTTPRoute) -> set[tuple[str, str]]:
    return {(method, route.path_format) for method in route.methods if method not in {"OPTIONS", "HEAD"}}


async def test_every_route_is_in_the_document(app: Litestar) -> None:
    routes = [
        route
        for route in app.routes
        if isinstance(route, HTTPRoute) and route.path != DOCS_PATH and not route.path.startswith(f"{DOCS_PATH}/")
    ]
    registered = set().union(*(_documented(route) for route in routes))
    assert registered, "no routes found"
    assert registered >= UNDOCUMENTED_ROUTES
    assert not UNDOCUMENTED_ROUTES & set(operations())
    missing = registered - set(operations()) - UNDOCUMENTED_ROUTES
    assert not missing, f"routes missing from the OpenAPI document: {sorted(missing)}"
    phantom = set(operations()) - registered
    assert not phantom, f"documented operations without a route: {sorted(phantom)}"
    assert all(isinstance(route, HTTPRoute) or route.path.startswith(DOCS_PATH) for route in app.routes)
