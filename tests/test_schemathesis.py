"""Property-based contract tests: Schemathesis drives every documented operation of a live server.

The server is the real ``bookstore serve`` (Granian) on 127.0.0.1, using the test database. Each
operation gets schema examples, coverage cases and fuzzed cases, valid and invalid, and every
response is checked against the OpenAPI document.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, GenerationMode

from bookstore.app import render_openapi_document
from tests.helpers import PASSWORD, bearer, book_payload
from tests.servers import BookstoreProcess

SECRET = "schemathesis-secret-" + "s" * 40
MAX_EXAMPLES = 30
SEED = 20261121
# Operations that end the caller's session or account: each of their examples runs with an account
# of its own, so they cannot log out the account the other operations use.
SESSION_ENDING_OPERATIONS = {"LogOut", "DeleteCurrentUser", "UpdateCurrentUser"}

_emails = itertools.count(1)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookstoreProcess]:
    """``bookstore serve`` on the test database (DATABASE_URL, set by conftest at import)."""
    directory = tmp_path_factory.mktemp("schemathesis-server")
    server = BookstoreProcess(directory, env={"BOOKSTORE_SECRET_KEY": SECRET, "PYTHONUNBUFFERED": "1"})
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Catalogue:
    """An account with a live access token, and books that exist (so ids hit real rows)."""

    http: httpx.Client
    base_url: str
    token: str
    book_ids: list[int]

    def fresh_token(self) -> str:
        email = f"fuzz-{next(_emails)}@example.com"
        registered = self.http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        login = self.http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        token: str = login.json()["access_token"]
        return token


@pytest.fixture
def catalogue(live_server: BookstoreProcess, database_url: str) -> Iterator[Catalogue]:
    # Function scope, and `database_url` so conftest empties the tables after the test: the
    # account and books are made after any earlier test's truncation and cleaned up after this one.
    with httpx.Client(base_url=live_server.base_url, timeout=10.0) as http:
        catalogue = Catalogue(http=http, base_url=live_server.base_url, token="", book_ids=[])
        catalogue.token = catalogue.fresh_token()
        for title in ("Kindred", "Dhalgren", "Solaris", "Nova", "Roadside Picnic"):
            created = http.post("/api/v1/books", json=book_payload(title=title), headers=bearer(catalogue.token))
            assert created.status_code == 201, created.text
            catalogue.book_ids.append(created.json()["id"])
        yield catalogue


# Operations whose every input rule is expressible in (and expressed by) the OpenAPI document, so
# any schema-valid request must be accepted. The others legitimately answer 400 or 412 to some
# schema-valid requests, which `positive_data_acceptance` would report as false positives:
# - ISBN-13 check digits, email syntax after NFKC normalisation, "at most one year in the future"
#   publish dates, `q` needing a letter or digit, `sort=relevance` needing `q`, a `cursor` having
#   to be one the service issued for the same listing, and a password change needing
#   `current_password` cannot be written in JSON Schema: 400 is the documented answer
#   (RegisterUser, ListBooks, CreateBook, ReplaceBook, UpdateBook, UpdateCurrentUser);
# - a well-formed but stale `If-Match` must get 412 (RFC 9110 13.1.1; ReplaceBook, UpdateBook,
#   DeleteBook), and 412 is not in the check's accepted statuses.
FULLY_DESCRIBED_OPERATIONS = [
    "LogIn",
    "IssueToken",
    "RefreshTokens",
    "LogOut",
    "GetCurrentUser",
    "DeleteCurrentUser",
    "GetBook",
    "CheckLiveness",
    "CheckReadiness",
]

CONFIG: dict[str, Any] = {
    "seed": SEED,
    "generation": {
        "mode": "all",  # positive and negative
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",
    },
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
    },
    "request-timeout": 10,
    "checks": {
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
        "negative_data_rejection": {"enabled": True},
        "missing_required_header": {"enabled": True},
        "unsupported_method": {"enabled": True},
        "allow_header_conformance": {"enabled": True},
        "ignored_auth": {"enabled": True},
        "positive_data_acceptance": {"enabled": False},
    },
    "operations": [
        {
            "include-operation-id": FULLY_DESCRIBED_OPERATIONS,
            "checks": {"positive_data_acceptance": {"enabled": True}},
        },
        {
            # `price` is documented as `["string", "number"]`; schemathesis "breaks" it by sending an
            # integer, which JSON Schema counts as a number and the server rightly accepts. With a
            # stale If-Match that valid request then gets 412, which the check does not expect.
            "include-operation-id": ["ReplaceBook", "UpdateBook", "DeleteBook"],
            "checks": {
                "negative_data_rejection": {
                    "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "412", "415", "422"]
                }
            },
        },
    ],
}


# Loaded at collection time from the code (the server is not running yet): the same document the
# server serves, see test_the_fuzzed_document_is_the_one_the_server_serves. `schemathesis.pytest.from_fixture`
# (lazy loading from the live URL) cannot be used: schemathesis 4.32.5 sets `request.node._nodeid`,
# which pytest 9.2 no longer has (AttributeError).
schema = schemathesis.openapi.from_dict(
    json.loads(render_openapi_document()), config=schemathesis.Config.from_dict(CONFIG)
)


@schema.parametrize()
# `catalogue` is deliberately shared by all examples of an operation (a fixed account and books).
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_openapi_document(case: Case, catalogue: Catalogue) -> None:
    token = catalogue.token
    if case.operation.definition.raw.get("operationId") in SESSION_ENDING_OPERATIONS:
        token = catalogue.fresh_token()
    book_id = (case.path_parameters or {}).get("book_id")
    is_positive = case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE
    if is_positive and isinstance(book_id, int) and book_id % 2 == 0:
        # Half of the valid ids point at books that exist, so reads and writes reach real rows.
        case.path_parameters["book_id"] = catalogue.book_ids[book_id % len(catalogue.book_ids)]
    case.call_and_validate(base_url=catalogue.base_url, headers={"Authorization": f"Bearer {token}"})


def test_the_fuzzed_document_is_the_one_the_server_serves(live_server: BookstoreProcess) -> None:
    served = httpx.get(f"{live_server.base_url}/docs/openapi.json", timeout=10.0)
    assert served.status_code == 200
    assert served.json() == schema.raw_schema


def test_every_operation_is_fuzzed_with_valid_and_invalid_data() -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = {
        operation["operationId"]
        for item in schema.raw_schema["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }
    assert {operation.definition.raw["operationId"] for operation in operations} == documented
    assert set(schema.config.generation.modes) == {GenerationMode.POSITIVE, GenerationMode.NEGATIVE}
    assert set(FULLY_DESCRIBED_OPERATIONS) | SESSION_ENDING_OPERATIONS <= documented
    for operation in operations:
        checks = schema.config.checks_config_for(operation=operation)
        assert checks.not_a_server_error.enabled
        assert checks.response_schema_conformance.enabled
        assert checks.negative_data_rejection.enabled
        expected = operation.definition.raw["operationId"] in FULLY_DESCRIBED_OPERATIONS
        assert checks.positive_data_acceptance.enabled is expected, operation.label
