"""The docs page in a real browser: Debian's headless Chromium, driven by Playwright, renders
``/docs`` of a live ``bookstore serve`` that serves Scalar's bundle itself
(BOOKSTORE_DOCS_ASSETS_DIR, filled by scripts/fetch-scalar), with every request to another origin
refused, so it shows that the page works offline and under its own CSP.

Without Chromium or the fetched bundle the test is skipped with a reason; under CI, where .ci/run
installs the one and fetches the other, that is a failure.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Request, Response, Route, sync_playwright

from tests.servers import BookstoreProcess, skip_absent_tool

ROOT = Path(__file__).resolve().parent.parent
# Where scripts/fetch-scalar puts the bundle by default.
SCALAR_DIR = ROOT / ".bookstore" / "scalar"
# Summaries of the Books operations, as the page shows them.
BOOK_OPERATIONS = ("List, filter, search and sort books", "Add a book", "Get one book")
BOOKS_TAG_DESCRIPTION = "The catalogue."
# Parsing and rendering the 3 MB bundle took 8-10 s on the two shared cores (research for issue 14, §7).
RENDER_TIMEOUT_MS = 30_000
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu"]


def chromium_binary() -> str:
    """Debian's Chromium; Playwright's own browser download is never used."""
    path = shutil.which("chromium")
    if path is None:
        skip_absent_tool("chromium is not installed (Debian: apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookstoreProcess]:
    if not (SCALAR_DIR / "standalone.js").is_file():
        skip_absent_tool(f"Scalar's bundle is not in {SCALAR_DIR} (run scripts/fetch-scalar)")
    server = BookstoreProcess(
        tmp_path_factory.mktemp("docs-browser"), env={"BOOKSTORE_DOCS_ASSETS_DIR": str(SCALAR_DIR)}
    )
    try:
        yield server
    finally:
        server.stop()


def test_docs_render_offline_with_no_console_errors(
    docs_server: BookstoreProcess, database_url: str, tmp_path: Path
) -> None:
    origin = docs_server.base_url
    problems: list[str] = []
    elsewhere: list[str] = []

    def stay_on_origin(route: Route, request: Request) -> None:
        # As on a machine without internet: anything the page asks of another origin fails.
        if request.url.startswith(f"{origin}/") or request.url.startswith("data:"):
            route.continue_()
        else:
            elsewhere.append(request.url)
            route.abort("internetdisconnected")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text} at {message.location}")

    def on_response(response: Response) -> None:
        if response.status >= 400:
            problems.append(f"HTTP {response.status} for {response.url}")

    started = time.perf_counter()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_binary(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", stay_on_origin)
            page.on("console", on_console)
            page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
            page.on("requestfailed", lambda request: problems.append(f"failed: {request.url} {request.failure}"))
            page.on("response", on_response)

            page.goto(f"{origin}/docs")
            # The reference renders a tag's operations once it is opened, as a reader does in the sidebar.
            books_tag = page.get_by_text("books", exact=True).first
            books_tag.wait_for(timeout=RENDER_TIMEOUT_MS)
            books_tag.click()
            # The reference scrolls to the tag: its description shows, and its operations are listed.
            page.get_by_text(BOOKS_TAG_DESCRIPTION).wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
            for summary in BOOK_OPERATIONS:
                page.get_by_text(summary).first.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
            visible_text = page.inner_text("body")
            screenshot = tmp_path / "docs.png"
            page.screenshot(path=str(screenshot))
        finally:
            browser.close()
    print(f"\n/docs rendered in Chromium in {time.perf_counter() - started:.1f} s; screenshot: {screenshot}")

    assert all(text in visible_text for text in (*BOOK_OPERATIONS, BOOKS_TAG_DESCRIPTION))
    assert elsewhere == [], "the page asked for resources of another origin"
    assert problems == []
    assert screenshot.stat().st_size > 10_000
