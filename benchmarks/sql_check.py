"""The SQL check: with PostgreSQL's statement log on, one request of each scenario to the app and
to the floor, and the statements each made the server execute, compared; so a change of the app's
SQL that ``floor.py`` does not follow shows up as ``DIFFERENT statements``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import httpx

from benchmarks.wrk import PARITY_ISBN_SLOT
from bookstore.books.isbn import isbn13_check_digit
from bookstore.testing import HttpServer, StatementLog, statement_log

__all__ = ["AUTH_STATEMENT_MARKERS", "check_sql_parity", "print_parity"]

# Statements of the app's authentication (the floor has none); matched in PostgreSQL's log.
AUTH_STATEMENT_MARKERS = ("auth_session",)

Request = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body


def _isbns(skip: set[str]) -> Iterator[str]:
    """ISBNs of the SQL check's creates, in a slot of their own, none already in the database."""
    for sequence in range(1, 10**7):
        stem = f"979{PARITY_ISBN_SLOT:02d}{sequence:07d}"
        if (isbn := stem + isbn13_check_digit(stem)) not in skip:
            yield isbn


def _parity_requests(isbns: Iterator[str]) -> dict[str, Callable[[], Request]]:
    """One representative request per scenario (mixed is get_book plus create_book)."""

    def create() -> Request:
        body = {
            "title": "SQL check",
            "author": "Load Tester",
            "publish_date": "2020-01-01",
            "isbn": next(isbns),
            "price": "12.50",
        }
        return "POST", "/api/v1/books", body

    return {
        "get_book": lambda: ("GET", "/api/v1/books/1", None),
        "list_books": lambda: ("GET", "/api/v1/books?min_price=10.00&max_price=30.00&sort=-price&limit=20", None),
        "create_book": create,
        "update_book": lambda: ("PATCH", "/api/v1/books/1", {"price": "12.34"}),
    }


def _statements_of(
    log: StatementLog, server: HttpServer, make: Callable[[], Request], token: str
) -> tuple[list[str], int]:
    """The statements of the second of two requests (the first prepares them), and its status."""
    statements: list[str] = []
    status = 0
    for _ in range(2):
        method, path, body = make()
        headers = {"Authorization": f"Bearer {token}"} if method != "GET" else {}
        with log.capture() as captured:
            status = httpx.request(method, server.base_url + path, json=body, headers=headers, timeout=10).status_code
        statements = captured
    return statements, status


def check_sql_parity(
    database_url: str, servers: Mapping[str, HttpServer], token: str, skip: set[str]
) -> dict[str, Any]:
    """Send one request per scenario to app and floor with PostgreSQL's statement log on; compare."""
    isbns = _isbns(skip)
    report: dict[str, Any] = {}
    with statement_log(database_url) as log:
        for scenario, make in _parity_requests(isbns).items():
            entry: dict[str, Any] = {}
            for target, server in servers.items():
                statements, status = _statements_of(log, server, make, token)
                entry[target] = {"status": status, "statements": statements}
            app_statements = entry["app"]["statements"]
            auth = [s for s in app_statements if any(marker in s for marker in AUTH_STATEMENT_MARKERS)]
            entry["app_auth_statements"] = len(auth)
            entry["same"] = [s for s in app_statements if s not in auth] == entry["floor"]["statements"]
            report[scenario] = entry
    return report


def print_parity(report: Mapping[str, Any]) -> list[str]:
    """Print the SQL check; return the scenarios whose statements differ."""
    print("\nSQL per request (PostgreSQL statement log, 2nd of two requests, app vs floor):")
    different = []
    for scenario, entry in report.items():
        app, floor = entry["app"], entry["floor"]
        auth = entry["app_auth_statements"]
        note = f" + {auth} authentication statement(s) in the app only" if auth else ""
        verdict = "same statements" if entry["same"] else "DIFFERENT statements"
        statuses = f"HTTP {app['status']}/{floor['status']}"
        print(f"  {scenario}: {verdict} ({len(floor['statements'])} in the floor{note}); {statuses}")
        if not entry["same"]:
            different.append(scenario)
            for target in ("app", "floor"):
                for statement in entry[target]["statements"]:
                    print(f"      {target}: {statement}")
    return different
