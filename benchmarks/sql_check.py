"""The SQL check: with PostgreSQL's statement log on, one request of each scenario to the app and
to the floor, and the statements each made the server execute, compared; so a change of the app's
SQL that ``floor.py`` does not follow shows up as ``DIFFERENT statements``. The log shows the
statements but not their parameters, so for reads the ids of the books each answered are
compared too (``DIFFERENT rows``): a floor that read a cursor or built a search differently
would show there. And for reads the responses themselves (``DIFFERENT response``): the same
content type, and the same JSON (page cursors aside: the floor signs its own) or, for a cover,
the same bytes; so a field the app's books gain and the floor's lack shows up too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from benchmarks.catalogue import ScenarioData
from benchmarks.wrk import PARITY_ISBN_SLOT
from bookstore.books.isbn import isbn13_check_digit
from bookstore.testing import HttpServer, StatementLog, statement_log

__all__ = ["AUTH_STATEMENT_MARKERS", "DRIVER_STATEMENT_MARKERS", "check_sql_parity", "print_parity"]

# Statements of the app's authentication (the floor has none); matched in PostgreSQL's log.
AUTH_STATEMENT_MARKERS = ("auth_session",)
# asyncpg's own statements, sent on a connection the first time it meets parameter types it must
# look up (the orders' arrays): the type introspection, and the JIT switch around it, whose first
# line (all the log shows) is empty. Whether a request lands on such a connection is chance.
DRIVER_STATEMENT_MARKERS = ("typeinfo_tree",)

# A search that finds nothing: the app then runs its second search statement (all matches).
NO_MATCH_WORD = "zzyzx"
# Fields of a page that app and floor fill differently: the floor signs its cursors over the query
# string, the app over the parsed filters.
_OWN_FIELDS = frozenset({"next_cursor", "prev_cursor"})

Request = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body


def _isbns(skip: set[str]) -> Iterator[str]:
    """ISBNs of the SQL check's creates, in a slot of their own, none already in the database."""
    for sequence in range(1, 10**7):
        stem = f"979{PARITY_ISBN_SLOT:02d}{sequence:07d}"
        if (isbn := stem + isbn13_check_digit(stem)) not in skip:
            yield isbn


def _parity_requests(
    isbns: Iterator[str], data: ScenarioData, cover_url: str | None
) -> dict[str, Callable[[], Request]]:
    """One representative request per scenario (mixed is get_book plus create_book), and a search
    that finds nothing; ``cover_url`` is one of the covers get_cover reads (None: no get_cover)."""

    def create() -> Request:
        body = {
            "title": "SQL check",
            "author": "Load Tester",
            "publish_date": "2020-01-01",
            "isbn": next(isbns),
            "price": "12.50",
        }
        return "POST", "/api/v1/books", body

    requests: dict[str, Callable[[], Request]] = {
        "get_book": lambda: ("GET", "/api/v1/books/1", None),
        "list_books": lambda: ("GET", "/api/v1/books?limit=20", None),
        "filter_books": lambda: ("GET", "/api/v1/books?min_price=10.00&max_price=30.00&sort=-price&limit=20", None),
        "search_books": lambda: ("GET", f"/api/v1/books?q={quote(data.words[0], safe='')}&limit=20", None),
        "search_books (no match)": lambda: ("GET", f"/api/v1/books?q={NO_MATCH_WORD}&limit=20", None),
        "deep_cursor": lambda: ("GET", f"/api/v1/books?limit=20&cursor={data.cursors[0]}", None),
        "create_book": create,
        "update_book": lambda: ("PATCH", "/api/v1/books/1", {"price": "12.34"}),
        "create_order": lambda: ("POST", "/api/v1/orders", {"items": [{"book_id": 1, "quantity": 1}]}),
    }
    if cover_url is not None:
        requests["get_cover"] = lambda: ("GET", cover_url, None)
    return requests


def _is_json(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.startswith("application/json")


def _book_ids(response: httpx.Response) -> list[int] | None:
    """The ids of the books a read answered with (a page's items, or the one book); None for writes,
    failures and what is not JSON (a cover)."""
    if response.request.method != "GET" or not response.is_success or not _is_json(response):
        return None
    body = response.json()
    return [item["id"] for item in body["items"]] if "items" in body else [body["id"]]


def _response_of(response: httpx.Response) -> dict[str, Any] | None:
    """What is compared of a successful read: its content type, and its JSON without the fields
    app and floor fill in their own ways, or the SHA-256 and length of its bytes; None for writes
    (each creates its own row) and failures."""
    if response.request.method != "GET" or not response.is_success:
        return None
    compared: dict[str, Any] = {"content_type": response.headers.get("content-type")}
    if _is_json(response):
        body = response.json()
        compared["json"] = {key: value for key, value in body.items() if key not in _OWN_FIELDS}
    else:
        compared["sha256"] = hashlib.sha256(response.content).hexdigest()
        compared["bytes"] = len(response.content)
        compared["content_length"] = response.headers.get("content-length")
    return compared


def _is_driver_statement(statement: str) -> bool:
    return not statement or any(marker in statement for marker in DRIVER_STATEMENT_MARKERS)


def _statements_of(
    log: StatementLog, server: HttpServer, make: Callable[[], Request], token: str
) -> tuple[list[str], httpx.Response]:
    """The statements of the second of two requests (the first prepares them), asyncpg's own left
    out, and its response."""
    statements: list[str] = []
    response: httpx.Response | None = None
    for _ in range(2):
        method, path, body = make()
        headers = {"Authorization": f"Bearer {token}"} if method != "GET" else {}
        with log.capture() as captured:
            response = httpx.request(method, server.base_url + path, json=body, headers=headers, timeout=10)
        statements = [statement for statement in captured if not _is_driver_statement(statement)]
    assert response is not None
    return statements, response


def check_sql_parity(
    database_url: str,
    servers: Mapping[str, HttpServer],
    token: str,
    skip: set[str],
    data: ScenarioData,
    cover_url: str | None,
) -> dict[str, Any]:
    """Send one request per scenario to app and floor with PostgreSQL's statement log on; compare."""
    isbns = _isbns(skip)
    report: dict[str, Any] = {}
    with statement_log(database_url) as log:
        for scenario, make in _parity_requests(isbns, data, cover_url).items():
            entry: dict[str, Any] = {}
            for target, server in servers.items():
                statements, response = _statements_of(log, server, make, token)
                entry[target] = {
                    "status": response.status_code,
                    "statements": statements,
                    "book_ids": _book_ids(response),
                    "response": _response_of(response),
                }
            app_statements = entry["app"]["statements"]
            auth = [s for s in app_statements if any(marker in s for marker in AUTH_STATEMENT_MARKERS)]
            entry["app_auth_statements"] = len(auth)
            entry["same"] = [s for s in app_statements if s not in auth] == entry["floor"]["statements"]
            entry["same_rows"] = entry["app"]["book_ids"] == entry["floor"]["book_ids"]
            entry["same_response"] = entry["app"]["response"] == entry["floor"]["response"]
            report[scenario] = entry
    return report


def print_parity(report: Mapping[str, Any]) -> list[str]:
    """Print the SQL check; return the scenarios whose statements, rows or responses differ."""
    print("\nSQL per request (PostgreSQL statement log, 2nd of two requests, app vs floor):")
    different = []
    for scenario, entry in report.items():
        app, floor = entry["app"], entry["floor"]
        auth = entry["app_auth_statements"]
        note = f" + {auth} authentication statement(s) in the app only" if auth else ""
        verdict = "same statements" if entry["same"] else "DIFFERENT statements"
        if app["book_ids"] is not None or floor["book_ids"] is not None:
            count = len(app["book_ids"] or [])
            verdict += f", same {count} books" if entry["same_rows"] else ", DIFFERENT rows"
        if app["response"] is not None or floor["response"] is not None:
            same = entry["same_response"]
            verdict += f", same response ({_describe(app['response'])})" if same else ", DIFFERENT response"
        statuses = f"HTTP {app['status']}/{floor['status']}"
        print(f"  {scenario}: {verdict} ({len(floor['statements'])} in the floor{note}); {statuses}")
        if not entry["same"]:
            for target in ("app", "floor"):
                for statement in entry[target]["statements"]:
                    print(f"      {target}: {statement}")
        if not entry["same_rows"]:
            for target in ("app", "floor"):
                print(f"      {target} books: {entry[target]['book_ids']}")
        if not entry["same_response"]:
            for target in ("app", "floor"):
                print(f"      {target} response: {entry[target]['response']}")
        if not (entry["same"] and entry["same_rows"] and entry["same_response"]):
            different.append(scenario)
    return different


def _describe(response: Mapping[str, Any] | None) -> str:
    if response is None:
        return "none"
    if "json" in response:
        return str(response["content_type"])
    return f"{response['content_type']}, {response['bytes']:,} identical bytes"
