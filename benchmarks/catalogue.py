"""What the read scenarios draw from the seeded catalogue, prepared before the timed runs: the
search words (the seed's own vocabulary, read from ``bookstore/books/seed.py`` so that the two
cannot drift apart) and the cursors of pages deep in the catalogue's default order (signed with
the app's secret by bookstore's own cursor code, as the app would have issued them).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from benchmarks import RunError
from bookstore.books.filters import book_cursor
from bookstore.books.queries import BookFilters, PagePosition
from bookstore.books.seed import COMMON_WORDS
from bookstore.core.cursors import CursorSigner
from bookstore.settings import load_settings
from bookstore.testing import fetch_rows

__all__ = [
    "DEEP_CURSOR_COUNT",
    "PAGE_LIMIT",
    "ScenarioData",
    "deep_cursors",
    "prepare_scenario_data",
    "search_words",
]

PAGE_LIMIT = 20  # the page size the list scenarios ask for (limit=20 in scenarios/lib.lua)
DEEP_CURSOR_COUNT = 1000  # distinct deep pages; wrk picks one at random per request
# GET /api/v1/books?limit=20: no filters, newest first; the listing the deep cursors belong to.
_DEFAULT_LISTING = BookFilters(limit=PAGE_LIMIT)
# The book at each 0-based position of that listing's order (book_page_query's ORDER BY).
_BOOKS_AT_POSITIONS = (
    "SELECT position, created_at, id FROM (SELECT row_number() OVER (ORDER BY created_at DESC, id DESC) - 1 "
    "AS position, created_at, id FROM book) AS ordered WHERE position = ANY($1::bigint[]) ORDER BY position"
)


@dataclass(frozen=True)
class ScenarioData:
    """The search words and deep cursors, and the files (one a line) the Lua scripts read them from."""

    words: list[str]
    cursors: list[str]
    words_file: Path
    cursors_file: Path


def search_words() -> list[str]:
    """Every adjective, noun and last name the seed writes into titles and authors; each is in
    roughly 3.5-8 % of the books, so every search finds a page's worth among the newest books."""
    return list(COMMON_WORDS)


def deep_cursors(
    database_url: str, env: Mapping[str, str], books: int, count: int = DEEP_CURSOR_COUNT, seed: int = 1
) -> list[str]:
    """``next`` cursors of ``count`` pages at random positions between the middle and the end of
    the default listing, as the app (whose settings ``env`` holds) would have issued them."""
    settings = load_settings(env)
    signer = CursorSigner(settings.secret_key, settings.page_cursor_ttl_seconds)
    # A cursor "after" position p opens the page p+1..p+20; keep a full page and its next after it.
    first, last = books // 2, books - 2 * PAGE_LIMIT
    candidates = range(first, max(first, last) + 1)
    rng = random.Random(seed)  # noqa: S311 - positions to benchmark, not a secret
    positions = sorted(rng.sample(candidates, min(count, len(candidates))))
    rows = fetch_rows(database_url, _BOOKS_AT_POSITIONS, positions)
    if len(rows) != len(positions):
        raise RunError(f"found {len(rows)} of the {len(positions)} positions in a catalogue of {books} books")
    return [book_cursor(signer, _DEFAULT_LISTING, PagePosition("after", row[1], row[2])) for row in rows]


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))


def prepare_scenario_data(database_url: str, env: Mapping[str, str], books: int, directory: Path) -> ScenarioData:
    """The search words (URL-encoded in their file) and deep cursors, written to ``directory``."""
    words = search_words()
    cursors = deep_cursors(database_url, env, books)
    data = ScenarioData(words, cursors, directory / "search-words.txt", directory / "deep-cursors.txt")
    _write_lines(data.words_file, [quote(word, safe="") for word in words])
    _write_lines(data.cursors_file, cursors)
    return data
