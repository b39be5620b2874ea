"""Hostile input against a live ``bookstore serve``: every case is refused with the right 4xx as
problem+json, and costs the server log at most one line and never a traceback.

The cases come from an attacker-style probe of the running service (issue 12): invalid UTF-8
inside JSON strings (a 500 and a traceback on every JSON route), numbers and text in lax forms
that Python's ``int()``/``Decimal()`` and msgspec accept ("+1", "01", "١٢", "1e3", U+200B titles),
and HEAD answered with 405.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import httpx
import pytest

from bookstore.core.tokens import ACCESS, ALGORITHM, AUDIENCE, ISSUER, REFRESH, BookstoreToken
from bookstore.piccolo_app import APP_CONFIG
from bookstore.testing import fetch_rows
from tests.helpers import PASSWORD, assert_problem, bearer, book_payload, unique_email
from tests.servers import BookstoreProcess

SECRET = "hostile-input-secret-" + "h" * 40
BOOKS = "/api/v1/books"
ME = "/api/v1/users/me"
MARK = "MARK"  # the place in a valid body where a case puts its hostile bytes


@dataclass(frozen=True)
class JsonRoute:
    """A route that takes a JSON body, and a body it accepts with ``MARK`` inside one string."""

    method: str
    path: str  # may name {book_id}
    make_body: Callable[[], dict[str, Any]]
    authenticated: bool

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


JSON_ROUTES = [
    JsonRoute("POST", "/api/v1/auth/register", lambda: {"email": f"{MARK}@example.com", "password": PASSWORD}, False),
    JsonRoute("POST", "/api/v1/auth/login", lambda: {"email": f"{MARK}@example.com", "password": PASSWORD}, False),
    JsonRoute("POST", "/api/v1/auth/refresh", lambda: {"refresh_token": MARK}, False),
    JsonRoute("POST", BOOKS, lambda: book_payload(title=MARK), True),
    JsonRoute("PUT", BOOKS + "/{book_id}", lambda: book_payload(title=MARK), True),
    JsonRoute("PATCH", BOOKS + "/{book_id}", lambda: {"title": MARK}, True),
    JsonRoute("PATCH", ME, lambda: {"email": f"{MARK}@example.com"}, True),
    # Orders hold no text: the mark stands where a book id belongs.
    JsonRoute("POST", "/api/v1/orders", lambda: {"items": [{"book_id": MARK, "quantity": 1}]}, True),
]


def _marked(route: JsonRoute, replacement: bytes) -> bytes:
    return json.dumps(route.make_body()).encode().replace(MARK.encode(), replacement)


def _with_member_first(route: JsonRoute, member: bytes) -> bytes:
    return b"{" + member + b", " + _marked(route, b"x")[1:]


# Each builds, from a route, a body every JSON route must refuse with 400.
MALFORMED_BODIES: dict[str, Callable[[JsonRoute], bytes]] = {
    "latin-1 byte in a string": lambda route: _marked(route, b"caf\xe9"),
    "lone continuation byte": lambda route: _marked(route, b"\x80"),
    "overlong encoding": lambda route: _marked(route, b"\xc0\xaf"),
    "encoded surrogate": lambda route: _marked(route, b"\xed\xa0\x80"),
    "truncated four-byte sequence": lambda route: _marked(route, b"\xf0\x9f\x98"),
    "0xff byte": lambda route: _marked(route, b"\xff"),
    "invalid UTF-8 in a key": lambda route: b'{"\xff": 1}',
    "escaped lone surrogate": lambda route: _marked(route, b"\\ud800"),
    "raw NUL in a string": lambda route: _marked(route, b"\x00"),
    "raw newline in a string": lambda route: _marked(route, b"\n"),
    "byte order mark": lambda route: b"\xef\xbb\xbf" + _marked(route, b"x"),
    "truncated": lambda route: _marked(route, b"x")[:-1],
    "trailing garbage": lambda route: _marked(route, b"x") + b"}",
    "number out of range": lambda route: _with_member_first(route, b'"n": 1e999'),
    "deep nesting": lambda route: _with_member_first(route, b'"n": ' + b"[" * 5_000 + b"]" * 5_000),
    "array": lambda route: b"[]",
    "null": lambda route: b"null",
    "empty": lambda route: b"",
}


@dataclass
class Probe:
    """Requests to the live server, each with the lines the server logged meanwhile."""

    server: BookstoreProcess
    http: httpx.Client

    def send(self, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, str]:
        logged_before = len(self.server.output())
        response = self.http.request(method, url, **kwargs)
        return response, self.server.output()[logged_before:]

    def refuses(self, status: int, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """Send a request that must get ``status`` as problem+json, logging at most one line and
        no traceback; return the problem body."""
        response, logged = self.send(method, url, **kwargs)
        body = assert_problem(response, status)
        assert "Traceback" not in logged, logged
        assert len(logged.splitlines()) <= 1, logged
        return body


@dataclass
class Writer:
    """An account with an access token and a book it created."""

    token: str
    book_id: int

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookstoreProcess]:
    directory: Path = tmp_path_factory.mktemp("hostile-input")
    # Without access lines: what a case logs is counted, and every request would add one.
    environment = {"BOOKSTORE_SECRET_KEY": SECRET, "BOOKSTORE_ACCESS_LOG": "false", "PYTHONUNBUFFERED": "1"}
    server = BookstoreProcess(directory, env=environment)
    try:
        yield server
    finally:
        server.stop()
        # The tables are emptied once for the module, not after every case as conftest does for
        # tests that ask for `database_url`: a TRUNCATE next to the live server took 0.2 s a case.
        tables = ", ".join(table._meta.tablename for table in APP_CONFIG.table_classes)
        fetch_rows(os.environ["DATABASE_URL"], f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="module")
def probe(server: BookstoreProcess) -> Iterator[Probe]:
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        yield Probe(server, http)


@pytest.fixture(scope="module")
def writer(probe: Probe) -> Writer:
    """Shared by the module's cases, none of which may change its book or account."""
    email = unique_email()
    registered = probe.http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    login = probe.http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    token: str = login.json()["access_token"]
    created = probe.http.post(BOOKS, json=book_payload(), headers=bearer(token))
    assert created.status_code == 201, created.text
    return Writer(token, created.json()["id"])


def _url(route: JsonRoute, writer: Writer | None) -> str:
    return route.path.format(book_id=writer.book_id if writer else 1)


@pytest.fixture
def route_writer(request: pytest.FixtureRequest) -> Writer | None:
    """The writer a parametrized ``route`` needs (None for the public routes)."""
    route: JsonRoute = request.getfixturevalue("route")
    return request.getfixturevalue("writer") if route.authenticated else None


# --- JSON bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(MALFORMED_BODIES))
@pytest.mark.parametrize("route", JSON_ROUTES, ids=str)
def test_malformed_json_body_is_refused(probe: Probe, route: JsonRoute, route_writer: Writer | None, case: str) -> None:
    headers = {"content-type": "application/json", **(route_writer.headers if route_writer else {})}
    content = MALFORMED_BODIES[case](route)
    probe.refuses(400, route.method, _url(route, route_writer), content=content, headers=headers)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
@pytest.mark.parametrize("route", JSON_ROUTES, ids=str)
def test_body_not_declared_as_json_is_unsupported(
    probe: Probe, route: JsonRoute, route_writer: Writer | None, content_type: str | None
) -> None:
    headers = {**(route_writer.headers if route_writer else {})}
    if content_type:
        headers["content-type"] = content_type
    content = json.dumps(route.make_body()).encode()
    probe.refuses(415, route.method, _url(route, route_writer), content=content, headers=headers)


def test_invalid_utf8_register_from_the_report_is_a_client_error(probe: Probe) -> None:
    content = b'{"email":"caf\xe9@example.com","password":"correct horse battery"}'
    body = probe.refuses(
        400, "POST", "/api/v1/auth/register", content=content, headers={"content-type": "application/json"}
    )
    assert body["errors"] == [{"message": "must be UTF-8 encoded JSON", "key": None, "source": "body"}]


# --- numbers and text in lax forms ------------------------------------------------------------

LAX_PRICES = [
    "1_000",
    "\u0661\u0662",  # Arabic-Indic 12
    "\uff11\uff12",  # fullwidth 12
    "+1",
    " 12.5 ",
    "1e3",
    "12.",
    ".5",
    "012",
    "12.500",
    "1,5",
    "-0",
    "0x10",
    "Infinity",
]
INVISIBLE_OR_MULTILINE_TEXT = [
    "\u200b",  # ZERO WIDTH SPACE (Cf)
    "\ufeff",  # ZERO WIDTH NO-BREAK SPACE / BOM (Cf)
    "\u200b\u2060\u200d",  # only format characters
    "\u3164",  # HANGUL FILLER: default-ignorable, though a letter by category
    "\ufe0f",  # a variation selector alone
    " \u00a0\u3000",  # only spaces
    "\u2028",  # LINE SEPARATOR (Zl)
    "Dune\u2028Messiah",
    "Dune\u2029Messiah",  # PARAGRAPH SEPARATOR (Zp)
    "Dune\n",  # a final newline, which Python's `$` used to let through
    "Dune\x85",  # NEXT LINE (C1 control)
]


@pytest.mark.parametrize("price", LAX_PRICES)
def test_price_in_a_lax_form_is_refused(probe: Probe, writer: Writer, price: str) -> None:
    body = probe.refuses(400, "POST", BOOKS, json=book_payload(price=price), headers=writer.headers)
    assert body["errors"][0]["key"] == "price", body
    patched = probe.refuses(400, "PATCH", f"{BOOKS}/{writer.book_id}", json={"price": price}, headers=writer.headers)
    assert patched["errors"][0]["key"] == "price", patched


@pytest.mark.parametrize("price", [True, None, [12], {"amount": 12}])
def test_price_of_another_json_type_is_refused(probe: Probe, writer: Writer, price: object) -> None:
    body = probe.refuses(400, "POST", BOOKS, json=book_payload(price=price), headers=writer.headers)
    assert body["errors"][0]["key"] == "price", body


@pytest.mark.parametrize(
    ("price", "stored"),
    [("12.50", "12.50"), ("12.5", "12.50"), ("12", "12.00"), ("0", "0.00"), ("0.99", "0.99"), (12.5, "12.50"),
     (12, "12.00"), (0.1, "0.10"), (1e3, "1000.00"), ("9999999999.99", "9999999999.99")],
)  # fmt: skip
def test_price_as_a_number_or_a_canonical_decimal_string_is_accepted(
    probe: Probe, writer: Writer, price: object, stored: str
) -> None:
    response, logged = probe.send("POST", BOOKS, json=book_payload(price=price), headers=writer.headers)
    assert response.status_code == 201, response.text
    assert response.json()["price"] == stored
    assert logged == ""


@pytest.mark.parametrize("field", ["title", "author"])
@pytest.mark.parametrize("text", INVISIBLE_OR_MULTILINE_TEXT, ids=ascii)
def test_invisible_or_multiline_text_is_refused(probe: Probe, writer: Writer, text: str, field: str) -> None:
    body = probe.refuses(400, "POST", BOOKS, json=book_payload(**{field: text}), headers=writer.headers)
    assert body["errors"][0]["key"] == field, body
    body = probe.refuses(400, "PATCH", f"{BOOKS}/{writer.book_id}", json={field: text}, headers=writer.headers)
    assert body["errors"][0]["key"] == field, body


@pytest.mark.parametrize(
    "title",
    [
        "\U0001f469\u200d\U0001f4bb Hackers",  # an emoji ZWJ sequence
        "\u200f\u05e9\u05dc\u05d5\u05dd\u200f",  # Hebrew between RIGHT-TO-LEFT MARKs
        "\u0627\u0644\u0643\u062a\u0627\u0628",  # Arabic
        "Caf\u00e9 \u00a0society",
        "soft\u00adhyphen",
    ],
    ids=ascii,
)
def test_text_with_a_visible_character_is_accepted_unchanged(probe: Probe, writer: Writer, title: str) -> None:
    response, logged = probe.send("POST", BOOKS, json=book_payload(title=title), headers=writer.headers)
    assert response.status_code == 201, response.text
    assert response.json()["title"] == title
    assert logged == ""


# Spellings of an id that Python's int() accepts once the path is percent-decoded: each used to
# reach the book.
LAX_ID_SPELLINGS: dict[str, Callable[[str], str]] = {
    "plus sign": lambda digits: f"+{digits}",
    "encoded plus sign": lambda digits: f"%2B{digits}",
    "leading zero": lambda digits: f"0{digits}",
    "leading space": lambda digits: f"%20{digits}",
    "trailing space": lambda digits: f"{digits}%20",
    "trailing newline": lambda digits: f"{digits}%0A",
    "trailing tab": lambda digits: f"{digits}%09",
    "underscore": lambda digits: f"0_{digits}",
    "Arabic-Indic digits": lambda digits: quote(digits.translate({ord("0") + n: 0x0660 + n for n in range(10)})),
    "fullwidth digits": lambda digits: quote(digits.translate({ord("0") + n: 0xFF10 + n for n in range(10)})),
}


@pytest.mark.parametrize("spelling", LAX_ID_SPELLINGS)
def test_book_id_in_a_lax_form_is_refused(probe: Probe, writer: Writer, spelling: str) -> None:
    url = f"{BOOKS}/{LAX_ID_SPELLINGS[spelling](str(writer.book_id))}"
    for method, body in [("GET", None), ("PUT", book_payload()), ("PATCH", {"title": "X"}), ("DELETE", None)]:
        problem = probe.refuses(400, method, url, json=body, headers=writer.headers)
        assert [(error["key"], error["source"]) for error in problem["errors"]] == [("book_id", "path")], problem
        assert problem["detail"] == "Invalid input: `book_id` in the path.", problem
    unchanged = probe.http.get(f"{BOOKS}/{writer.book_id}")
    assert (unchanged.status_code, unchanged.headers["etag"]) == (200, '"1"')


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("limit=1e2", "limit"),
        ("limit=1.0", "limit"),
        ("limit=%2B5", "limit"),
        ("limit=05", "limit"),
        ("limit=%205", "limit"),
        ("limit=5%0A", "limit"),
        ("limit=%D9%A5", "limit"),
        ("limit=5&limit=1e1", "limit"),
        ("offset=-0", "offset"),
        ("offset=0x1", "offset"),
        ("offset=1_000", "offset"),
        ("min_price=1_000", "min_price"),
        ("min_price=%2012.5%20", "min_price"),
        ("min_price=1e3", "min_price"),
        ("min_price=12.5%0A", "min_price"),
        ("max_price=%D9%A1%D9%A2", "max_price"),
        ("max_price=%2B1", "max_price"),
        ("author=Le%20Guin%0A", "author"),
        ("q=dune%0A", "q"),
        ("q=dune%E2%80%A8", "q"),
    ],
)
def test_list_parameter_in_a_lax_form_is_refused(probe: Probe, query: str, key: str) -> None:
    body = probe.refuses(400, "GET", f"{BOOKS}?{query}")
    assert body["errors"][0]["key"] == key, body
    # Says what failed, never echoing the request back.
    assert body["detail"] == f"Invalid input: `{key}` in the query.", body


# --- tokens, headers and methods --------------------------------------------------------------


def _signed(kind: str, sub: str) -> str:
    token = BookstoreToken(
        sub=sub,
        exp=datetime.now(UTC) + timedelta(minutes=5),
        jti=uuid4().hex,
        iss=ISSUER,
        aud=AUDIENCE,
        typ=kind,
        sid=str(uuid4()),
    )
    return token.encode(SECRET, ALGORITHM)


@pytest.mark.parametrize("sub", ["9" * 40, "2147483648", "01", "+1", "\u0661", " 1"])
def test_validly_signed_token_with_an_impossible_subject_is_unauthorized(probe: Probe, sub: str) -> None:
    probe.refuses(401, "GET", ME, headers=bearer(_signed(ACCESS, sub)))
    probe.refuses(401, "POST", "/api/v1/auth/refresh", json={"refresh_token": _signed(REFRESH, sub)})


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": b"Bearer \xff\xfe"}, 401),
        ({"Authorization": "Bearer " + "x" * 4000}, 401),
        ({"If-Match": b'"\xff"'}, 412),
        ({"If-Match": '"01"'}, 412),  # entity tags compare as text: "01" is not "1"
        ({"If-Match": '"+1"'}, 412),
    ],
    ids=repr,
)
def test_hostile_headers_are_refused(
    probe: Probe, writer: Writer, headers: dict[str, str | bytes], status: int
) -> None:
    url = f"{BOOKS}/{writer.book_id}"
    probe.refuses(status, "PATCH", url, json={"title": "X"}, headers={**writer.headers, **headers})
    assert probe.http.get(url).headers["etag"] == '"1"'


@pytest.mark.parametrize("path", [BOOKS, f"{BOOKS}?limit=1&sort=title", "{book}", ME, "/health", "/health/ready"])
def test_head_answers_like_get_without_a_body(probe: Probe, writer: Writer, path: str) -> None:
    url = path.format(book=f"{BOOKS}/{writer.book_id}")
    got, _ = probe.send("GET", url, headers=writer.headers)
    head, logged = probe.send("HEAD", url, headers=writer.headers)
    assert got.status_code == 200, got.text
    assert head.status_code == got.status_code
    assert head.content == b""
    compared = ("content-type", "content-length", "etag", "link", "cache-control")

    def headers_of(response: httpx.Response) -> dict[str, str | None]:
        # A cursor carries its expiry in whole seconds: two requests a second apart sign
        # different cursors for the same page, and they are all the links may differ in.
        headers = {name: response.headers.get(name) for name in compared}
        if headers["link"] is not None:
            headers["link"] = re.sub(r"cursor=[^&>]*", "cursor=<signed>", headers["link"])
        return headers

    assert headers_of(head) == headers_of(got)
    assert logged == ""


@pytest.mark.parametrize(
    ("path", "authenticated", "status"),
    [(f"{BOOKS}/999", False, 404), (ME, False, 401), ("/api/v1/auth/login", False, 405), (f"{BOOKS}/01", True, 400)],
)
def test_head_errors_are_those_of_get_without_a_body(
    probe: Probe, writer: Writer, path: str, authenticated: bool, status: int
) -> None:
    response, logged = probe.send("HEAD", path, headers=writer.headers if authenticated else {})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.content == b""
    assert "Traceback" not in logged


def test_empty_profile_change_is_refused_like_an_empty_book_change(probe: Probe, writer: Writer) -> None:
    for body in ({}, {"current_password": PASSWORD}):
        problem = probe.refuses(400, "PATCH", ME, json=body, headers=writer.headers)
        assert problem["detail"] == "Invalid input: the body.", problem
    probe.refuses(400, "PATCH", f"{BOOKS}/{writer.book_id}", json={}, headers=writer.headers)


# Runs last: every case above has been sent. Stopping the server writes out any log record
# still queued, so the whole log can be read.
def test_the_whole_log_has_no_traceback_and_no_error(server: BookstoreProcess) -> None:
    server.stop()
    log = server.output()
    assert "Traceback" not in log, log[-4000:]
    assert "ERROR" not in log, log[-4000:]
