"""Paging through ``GET /api/v1/books`` on the real database: cursor walks in every sort order
(ties included) against an ORDER BY written here, cursors that are refused, stability while books
are added and removed, capped totals, relevance, and the two paths of a text search."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, get_args
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar

from bookstore.books.filters import CURSOR_LISTING, MAX_OFFSET, book_cursor
from bookstore.books.queries import SEARCH_WINDOW, BookFilters, PagePosition, book_page_query
from bookstore.books.schemas import TOTAL_COUNT_LIMIT, SortField
from bookstore.core.cursors import CURSOR_MAX_LENGTH, CursorSigner
from bookstore.settings import Settings
from tests.core.test_cursors import OTHER_SECRET, b64decode, flip_bit
from tests.helpers import ApiClient, assert_problem, unique_isbn
from tests.servers import statement_log

BOOKS = "/api/v1/books"
COLUMN_SORTS: list[SortField] = [sort for sort in get_args(SortField) if sort != "relevance"]
# Guards every walk: a listing of these tests never has more pages, so more means a cursor loops.
MAX_PAGES = 100


# --- data written straight to the database -----------------------------------------------------


@pytest.fixture
async def db(app: Litestar, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own: for rows the API cannot write (chosen timestamps,
    thousands at once), changes between two pages, and the reference queries."""
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


@dataclass(frozen=True)
class Row:
    title: str = "Middlemarch"
    author: str = "George Eliot"
    publish_date: date = date(1871, 12, 1)
    price: Decimal = Decimal("10.00")
    created_at: datetime = datetime(2020, 1, 1, tzinfo=UTC)


_INSERT_BOOK = (
    "INSERT INTO book (title, author, publish_date, isbn, price, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"
)
# ISBNs 979 + a number past those taken: the factories' unique_isbn() uses 978, so the two never
# collide, and the table checks only the pattern, not the check digit.
_INSERT_GENERATED_BOOKS = (
    "INSERT INTO book (title, author, publish_date, isbn, price, created_at) "
    "SELECT 'Filler ' || n, $1, date '2000-01-01' + n % 7000, '979' || lpad((taken.last + n)::text, 10, '0'), "
    "(n % 5000) / 100.0, timestamptz '2020-01-01 00:00Z' - n * interval '1 second' "
    "FROM generate_series(1, $2::int) AS n, "
    "(SELECT coalesce(max(right(isbn, 10)::bigint), 0) AS last FROM book WHERE isbn LIKE '979%') AS taken"
)


async def insert_books(db: asyncpg.Connection, rows: Iterable[Row]) -> list[int]:
    return [
        await db.fetchval(
            _INSERT_BOOK, row.title, row.author, row.publish_date, unique_isbn(), row.price, row.created_at
        )
        for row in rows
    ]


async def insert_generated_books(db: asyncpg.Connection, count: int, *, author: str = "Filler Author") -> None:
    """``count`` books in one statement: the n-th titled "Filler <n>", created n seconds before 2020."""
    await db.execute(_INSERT_GENERATED_BOOKS, author, count)


def order_by(sort: str, search: str) -> str:
    """The ORDER BY clause the API documents for ``sort``; ``search`` is the tsquery expression."""
    if sort == "relevance":
        return f"ts_rank(search_vector, {search}) DESC, id DESC"
    column, direction = sort.lstrip("-"), "DESC" if sort.startswith("-") else "ASC"
    assert column in {"title", "author", "publish_date", "price", "created_at"}, sort
    return f"{column} {direction}, id {direction}"


async def reference_ids(db: asyncpg.Connection, sort: str, tsquery: str | None = None) -> list[int]:
    """The ids of a whole listing in its documented order, written here independently of the
    service's queries; ``tsquery`` (e.g. ``"saga:*"``) restricts it to a text search's matches."""
    search = "to_tsquery('simple', $1)"
    where = f" WHERE search_vector @@ {search}" if tsquery is not None else ""
    sql = f"SELECT id FROM book{where} ORDER BY {order_by(sort, search)}"  # noqa: S608 - no values inside
    return [row["id"] for row in await db.fetch(sql, *([tsquery] if tsquery is not None else []))]


# --- pages through the API ---------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    ids: list[int]
    next_cursor: str | None
    prev_cursor: str | None


def page_links(response: httpx.Response) -> dict[str, dict[str, list[str]]]:
    """The query parameters of each target of the ``Link`` header, by relation."""
    links = {}
    for target, relation in re.findall(r'<([^>]*)>; rel="([^"]*)"', response.headers.get("link", "")):
        url = urlsplit(target)
        assert url.path == BOOKS, target
        links[relation] = parse_qs(url.query, keep_blank_values=True)
    return links


async def get_page(client: ApiClient, params: Mapping[str, Any]) -> Page:
    """One page; its ``Link`` header must name the same neighbours as its body."""
    response = await client.get(BOOKS, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    kept = {key: [str(value)] for key, value in params.items() if key not in {"cursor", "offset"}}
    expected_links = {
        relation: {**kept, "cursor": [cursor]}
        for relation, cursor in (("next", body["next_cursor"]), ("prev", body["prev_cursor"]))
        if cursor is not None
    }
    assert page_links(response) == expected_links
    return Page([book["id"] for book in body["items"]], body["next_cursor"], body["prev_cursor"])


async def walk_forward(client: ApiClient, params: Mapping[str, Any], limits: Iterator[int]) -> list[Page]:
    """Every page from the first, following ``next_cursor``, each with the next of ``limits``."""
    pages = [await get_page(client, {**params, "limit": next(limits)})]
    while (cursor := pages[-1].next_cursor) is not None:
        assert len(pages) < MAX_PAGES, pages
        pages.append(await get_page(client, {**params, "limit": next(limits), "cursor": cursor}))
    return pages


async def walk_back(client: ApiClient, params: Mapping[str, Any], last: Page, limit: int) -> list[Page]:
    """The pages before ``last``, following ``prev_cursor``, in the order they are listed."""
    pages = [last]
    while (cursor := pages[0].prev_cursor) is not None:
        assert len(pages) < MAX_PAGES, pages
        pages.insert(0, await get_page(client, {**params, "limit": limit, "cursor": cursor}))
    return pages


def ids_of(pages: list[Page]) -> list[int]:
    return [book_id for page in pages for book_id in page.ids]


# --- cursor walks in every order -----------------------------------------------------------------

# Few distinct values per column, so every sort has ties that only the id decides; "saga" is in
# the title, the author or both of all books but one, so a search ranks them with ties too.
_TITLES = ["Saga", "Alpha Saga", "Beta", "Saga of the Saga"]
_AUTHORS = ["Saga Writers", "Ann Lee", "Bo Saga"]
_DATES = [date(2001, 1, 1), date(1999, 6, 1)]
_PRICES = [Decimal("10.00"), Decimal("7.50"), Decimal("12.00"), Decimal("7.50"), Decimal("10.00")]
_TIMES = [datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 6, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC)]
TIED_BOOKS = [Row(_TITLES[n % 4], _AUTHORS[n % 3], _DATES[n % 2], _PRICES[n % 5], _TIMES[n % 3]) for n in range(13)]
SEARCH = "saga"
SEARCH_TSQUERY = "saga:*"

# (query parameters, documented sort, tsquery of the search or None)
LISTINGS: list[tuple[Mapping[str, str], SortField, str | None]] = [
    *[({"sort": sort}, sort, None) for sort in COLUMN_SORTS],
    ({"q": SEARCH, "sort": "relevance"}, "relevance", SEARCH_TSQUERY),
    ({"q": SEARCH, "sort": "title"}, "title", SEARCH_TSQUERY),
    ({"q": SEARCH, "sort": "-price"}, "-price", SEARCH_TSQUERY),
    ({"q": SEARCH}, "-created_at", SEARCH_TSQUERY),
]
LISTING_IDS = ["&".join(f"{key}={value}" for key, value in params.items()) for params, _, _ in LISTINGS]
each_listing = pytest.mark.parametrize(("params", "sort", "tsquery"), LISTINGS, ids=LISTING_IDS)


@pytest.fixture
async def tied_books(db: asyncpg.Connection) -> list[int]:
    return await insert_books(db, TIED_BOOKS)


@each_listing
async def test_next_cursors_walk_the_whole_listing_in_order_and_prev_cursors_walk_the_same_pages_back(
    client: ApiClient,
    db: asyncpg.Connection,
    tied_books: list[int],
    params: Mapping[str, str],
    sort: str,
    tsquery: str | None,
) -> None:
    expected = await reference_ids(db, sort, tsquery)
    assert len(expected) >= 12  # ties in every column, across more than two pages of 5
    pages = await walk_forward(client, params, itertools.repeat(5))
    assert ids_of(pages) == expected
    assert [len(page.ids) for page in pages[:-1]] == [5] * (len(pages) - 1)
    assert pages[0].prev_cursor is None
    assert pages[-1].next_cursor is None
    back = await walk_back(client, params, pages[-1], 5)
    assert [page.ids for page in back] == [page.ids for page in pages]
    # A page reached backwards leads forward again to the page after it.
    for page, following in itertools.pairwise(back):
        assert page.next_cursor is not None
        assert (await get_page(client, {**params, "limit": 5, "cursor": page.next_cursor})).ids == following.ids


@each_listing
async def test_page_size_may_change_from_one_page_to_the_next(
    client: ApiClient,
    db: asyncpg.Connection,
    tied_books: list[int],
    params: Mapping[str, str],
    sort: str,
    tsquery: str | None,
) -> None:
    pages = await walk_forward(client, params, itertools.cycle([1, 4, 2, 7]))
    assert ids_of(pages) == await reference_ids(db, sort, tsquery)
    assert [len(page.ids) for page in pages[:3]] == [1, 4, 2]


async def test_a_listing_that_ends_on_a_full_page_has_no_next_cursor_there(
    client: ApiClient, db: asyncpg.Connection, tied_books: list[int]
) -> None:
    pages = await walk_forward(client, {}, iter([3, 10]))
    assert [len(page.ids) for page in pages] == [3, 10]
    assert ids_of(pages) == await reference_ids(db, "-created_at")


async def test_following_the_link_header_walks_the_listing(
    client: ApiClient, db: asyncpg.Connection, tied_books: list[int]
) -> None:
    url: str | None = f"{BOOKS}?q={SEARCH}&sort=relevance&limit=4"
    listed: list[int] = []
    while url is not None:
        assert len(listed) < len(TIED_BOOKS), listed
        response = await client.get(url)
        assert response.status_code == 200, response.text
        listed += [book["id"] for book in response.json()["items"]]
        next_link = re.search(r'<([^>]*)>; rel="next"', response.headers.get("link", ""))
        url = next_link.group(1) if next_link else None
    assert listed == await reference_ids(db, "relevance", SEARCH_TSQUERY)


async def test_offset_pages_lead_on_with_cursors(
    client: ApiClient, db: asyncpg.Connection, tied_books: list[int]
) -> None:
    expected = await reference_ids(db, "price")
    middle = await get_page(client, {"sort": "price", "limit": 4, "offset": 4})
    assert middle.ids == expected[4:8]
    assert middle.next_cursor is not None
    assert middle.prev_cursor is not None
    assert (await get_page(client, {"sort": "price", "limit": 4, "cursor": middle.next_cursor})).ids == expected[8:12]
    assert (await get_page(client, {"sort": "price", "limit": 4, "cursor": middle.prev_cursor})).ids == expected[:4]


# --- cursors that are refused ---------------------------------------------------------------------


def _with_flipped_payload_bit(cursor: str) -> str:
    payload, tag = cursor.split(".")
    # The last digit of the book id, before the closing bracket: a cursor for a neighbouring book.
    return f"{flip_bit(payload, len(b64decode(payload)) - 2)}.{tag}"


def _with_flipped_tag_bit(cursor: str) -> str:
    payload, tag = cursor.split(".")
    return f"{payload}.{flip_bit(tag, 0)}"


def _signed_with_another_secret(cursor: str) -> str:
    _expiry, *values = msgspec.json.decode(b64decode(cursor.split(".")[0]))
    return CursorSigner(OTHER_SECRET, 3600).sign(values, listing=CURSOR_LISTING)


FORGERIES = {
    "payload bit flipped": _with_flipped_payload_bit,
    "tag bit flipped": _with_flipped_tag_bit,
    "signed with another secret": _signed_with_another_secret,
    "garbage": lambda _: "garbage",
    "tag empty": lambda cursor: cursor.split(".")[0] + ".",
    "payload empty": lambda cursor: "." + cursor.split(".")[1],
    "only the separator": lambda _: ".",
    "not base64": lambda cursor: cursor.replace(".", "*."),
    "non-ASCII": lambda cursor: "ü" + cursor,
    # Both parts well-formed base64 (lengths 1000 and 23), so only the tag check refuses it.
    "longest allowed, not a cursor": lambda _: "A" * (CURSOR_MAX_LENGTH - 24) + "." + "A" * 23,
    "overlong": lambda cursor: cursor + "A" * CURSOR_MAX_LENGTH,
    "empty": lambda _: "",
}


@pytest.fixture
async def title_page(client: ApiClient, tied_books: list[int]) -> Page:
    """The first page of the listing by title, which has a next page."""
    page = await get_page(client, {"sort": "title", "limit": 2})
    assert page.next_cursor is not None
    return page


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
async def test_forged_or_malformed_cursor_is_a_400_naming_cursor(
    client: ApiClient, title_page: Page, forge: Any
) -> None:
    assert title_page.next_cursor is not None
    forged = forge(title_page.next_cursor)
    response = await client.get(BOOKS, params={"sort": "title", "limit": 2, "cursor": forged})
    body = assert_problem(response, 400)
    assert [(error["key"], error["source"]) for error in body["errors"]] == [("cursor", "query")], body
    assert body["detail"] == "Invalid input: `cursor` in the query."


@pytest.mark.parametrize(
    "other_listing",
    [{"sort": "-title"}, {"sort": "author"}, {"sort": "title", "author": "Ann Lee"}, {"sort": "title", "q": SEARCH}],
    ids=["other-direction", "other-sort", "added-filter", "added-search"],
)
async def test_cursor_of_another_listing_is_a_400_naming_cursor(
    client: ApiClient, title_page: Page, other_listing: dict[str, str]
) -> None:
    response = await client.get(BOOKS, params={**other_listing, "limit": 2, "cursor": title_page.next_cursor})
    body = assert_problem(response, 400)
    assert [(error["key"], error["source"]) for error in body["errors"]] == [("cursor", "query")], body
    assert "other filters or another sort" in body["errors"][0]["message"]


async def test_cursor_with_an_offset_is_a_400_naming_offset(client: ApiClient, title_page: Page) -> None:
    response = await client.get(BOOKS, params={"sort": "title", "offset": 3, "cursor": title_page.next_cursor})
    body = assert_problem(response, 400)
    assert [(error["key"], error["source"]) for error in body["errors"]] == [("offset", "query")], body


async def test_cursor_stays_valid_with_another_page_size_or_without_the_total(
    client: ApiClient, db: asyncpg.Connection, title_page: Page
) -> None:
    params = {"sort": "title", "limit": 3, "include_total": "false", "cursor": title_page.next_cursor}
    assert (await get_page(client, params)).ids == (await reference_ids(db, "title"))[2:5]


async def test_expired_cursor_is_a_400_naming_cursor(
    client: ApiClient, settings: Settings, db: asyncpg.Connection, tied_books: list[int]
) -> None:
    expected = await reference_ids(db, "title")
    first = await db.fetchrow("SELECT title, id FROM book WHERE id = $1", expected[0])
    position = PagePosition("after", first["title"], first["id"])
    ttl = settings.page_cursor_ttl_seconds
    fresh = book_cursor(CursorSigner(settings.secret_key, ttl), BookFilters(sort="title"), position)
    # Issued by the service's own key at a time long past, so it expired long ago.
    stale = book_cursor(
        CursorSigner(settings.secret_key, ttl, clock=lambda: 1_000_000_000.0), BookFilters(sort="title"), position
    )
    assert (await get_page(client, {"sort": "title", "limit": 2, "cursor": fresh})).ids == expected[1:3]
    body = assert_problem(await client.get(BOOKS, params={"sort": "title", "limit": 2, "cursor": stale}), 400)
    assert [(error["key"], error["source"]) for error in body["errors"]] == [("cursor", "query")], body
    assert "expired" in body["errors"][0]["message"]


# --- offsets ---------------------------------------------------------------------------------------


async def test_offset_up_to_the_bound_is_accepted(client: ApiClient, tied_books: list[int]) -> None:
    page = await get_page(client, {"offset": MAX_OFFSET})
    assert page.ids == []


async def test_offset_past_the_bound_is_a_400_naming_offset(client: ApiClient) -> None:
    body = assert_problem(await client.get(BOOKS, params={"offset": MAX_OFFSET + 1}), 400)
    assert [(error["key"], error["source"]) for error in body["errors"]] == [("offset", "query")], body


# --- books added and removed between pages ----------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A sort, its column, six values in listing order (each given to two books), and a value
    listed before all of them and one listed after all of them."""

    sort: str
    column: str
    values: list[Any]
    listed_first: Any
    listed_last: Any


SCENARIOS = [
    Scenario("title", "title", ["M1", "M2", "M3", "M4", "M5", "M6"], "A0", "Z9"),
    Scenario(
        "-created_at",
        "created_at",
        [datetime(2020, 1, day, tzinfo=UTC) for day in range(6, 0, -1)],
        datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2010, 1, 1, tzinfo=UTC),
    ),
    Scenario("price", "price", [Decimal(n) for n in range(1, 7)], Decimal("0.00"), Decimal("99.00")),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.sort for scenario in SCENARIOS])
async def test_books_added_and_removed_between_pages_never_make_a_page_repeat_or_skip_a_book(
    client: ApiClient, db: asyncpg.Connection, scenario: Scenario
) -> None:
    def row(value: Any) -> Row:
        return dataclasses.replace(Row(), **{scenario.column: value})

    values_by_id: dict[int, Any] = {}

    async def add(value: Any) -> int:
        (book_id,) = await insert_books(db, [row(value)])
        values_by_id[book_id] = value
        return book_id

    async def remove(book_id: int) -> None:
        assert await db.execute("DELETE FROM book WHERE id = $1", book_id) == "DELETE 1"

    initial = [await add(value) for value in scenario.values for _ in range(2)]
    initial_order = await reference_ids(db, scenario.sort)
    params = {"sort": scenario.sort, "limit": 3}
    pages = [await get_page(client, params)]

    listed_before_the_position = await add(scenario.listed_first)
    listed_after_the_position = await add(scenario.listed_last)
    removed_unlisted = [initial_order[6]]
    await remove(pages[0].ids[0])  # already listed
    await remove(pages[0].ids[-1])  # the book the next cursor starts after
    await remove(removed_unlisted[0])
    assert pages[0].next_cursor is not None
    pages.append(await get_page(client, {**params, "cursor": pages[0].next_cursor}))

    # The value of the position and a larger id than any so far: after the position when ascending,
    # before it when descending.
    tied_with_the_position = await add(values_by_id[pages[1].ids[-1]])
    removed_unlisted.append(initial_order[10])
    await remove(removed_unlisted[1])
    while (cursor := pages[-1].next_cursor) is not None:
        assert len(pages) < MAX_PAGES, pages
        pages.append(await get_page(client, {**params, "cursor": cursor}))

    listed = ids_of(pages)
    descending = scenario.sort.startswith("-")
    # Every book there throughout exactly once, none removed before its page, and those added
    # where the walk had yet to go; in the listing's order.
    expected = set(initial) - set(removed_unlisted) | {listed_after_the_position}
    if not descending:
        expected.add(tied_with_the_position)
    assert listed == sorted(expected, key=lambda book_id: (values_by_id[book_id], book_id), reverse=descending)
    assert listed_before_the_position not in listed


# --- totals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "total", "exact"),
    [(TOTAL_COUNT_LIMIT, TOTAL_COUNT_LIMIT, True), (TOTAL_COUNT_LIMIT + 1, TOTAL_COUNT_LIMIT, False)],
    ids=["at-the-limit", "past-the-limit"],
)
@pytest.mark.parametrize(
    ("params", "others"),
    [({}, []), ({"author": "FILLER AUTHOR"}, [Row()]), ({"q": "filler", "include_total": "true"}, [Row()])],
    ids=["all", "filtered", "searched"],
)
async def test_total_is_exact_up_to_the_limit_and_capped_past_it(
    client: ApiClient,
    db: asyncpg.Connection,
    params: dict[str, str],
    others: list[Row],
    count: int,
    total: int,
    exact: bool,
) -> None:
    await insert_generated_books(db, count)
    await insert_books(db, others)  # books the filter leaves out
    response = await client.get(BOOKS, params={**params, "limit": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["total"], body["total_exact"]) == (total, exact)
    assert len(body["items"]) == 1


@pytest.mark.parametrize(
    ("params", "counted"),
    [
        ({}, True),
        ({"include_total": "true"}, True),
        ({"include_total": "false"}, False),
        ({"q": SEARCH}, False),
        ({"q": SEARCH, "include_total": "false"}, False),
        ({"q": SEARCH, "include_total": "true"}, True),
    ],
    ids=["default", "asked", "declined", "search-default", "search-declined", "search-asked"],
)
async def test_total_is_counted_unless_declined_and_by_default_not_for_a_search(
    client: ApiClient, db: asyncpg.Connection, tied_books: list[int], params: dict[str, str], counted: bool
) -> None:
    matching = len(await reference_ids(db, "title", SEARCH_TSQUERY if "q" in params else None))
    response = await client.get(BOOKS, params={**params, "limit": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = (matching, True) if counted else (None, False)
    assert (body["total"], body["total_exact"]) == expected
    assert len(body["items"]) == 2
    assert body["next_cursor"] is not None  # paging works either way


# --- relevance -------------------------------------------------------------------------------------


async def test_relevance_puts_title_matches_above_author_matches(client: ApiClient, db: asyncpg.Connection) -> None:
    # Title matches first inserted: on equal ranks the larger id would come first, so only the
    # rank can put them ahead.
    in_titles = await insert_books(db, [Row(title="Foundation", author="Isaac Asimov")] * 3)
    in_authors = await insert_books(db, [Row(title="Essays", author="Foundation Press")] * 3)
    pages = await walk_forward(client, {"q": "foundation", "sort": "relevance"}, itertools.repeat(2))
    assert ids_of(pages) == in_titles[::-1] + in_authors[::-1]


async def test_relevance_without_a_search_is_a_400_naming_sort(client: ApiClient) -> None:
    body = assert_problem(await client.get(BOOKS, params={"sort": "relevance"}), 400)
    assert [(error["key"], error["source"]) for error in body["errors"]] == [("sort", "query")], body


# --- search: words, and the window or the index -------------------------------------------------


@pytest.mark.parametrize(
    ("q", "titles"),
    [
        ("dun", ["Dune", "Dune Messiah", "Dunes of Mars"]),
        ("dune mess", ["Dune Messiah"]),
        ("dun messiah", []),  # only the last word may be the start of a longer word
        ("dune", ["Dune", "Dune Messiah", "Dunes of Mars"]),
        ("dune of", []),  # "dune" is not a word of "Dunes of Mars"
        ("dunes of", ["Dunes of Mars"]),
        ("messiah dun", ["Dune Messiah"]),
    ],
)
async def test_only_the_last_word_of_a_search_matches_as_a_prefix(
    client: ApiClient, db: asyncpg.Connection, q: str, titles: list[str]
) -> None:
    await insert_books(db, [Row(title="Dune"), Row(title="Dune Messiah"), Row(title="Dunes of Mars")])
    response = await client.get(BOOKS, params={"q": q, "sort": "title"})
    assert response.status_code == 200, response.text
    assert [book["title"] for book in response.json()["items"]] == titles


# More than the rows a search tries in page order before it asks the search index.
FILLER_BOOKS = SEARCH_WINDOW + 1000
COMMON_WORD = "common"
RARE_WORD = "zanzibar"


@pytest.fixture
async def large_catalogue(db: asyncpg.Connection) -> None:
    """More books by "Common Author" than the search window holds, and four "Zanzibar" books: the
    newest of all, which the window holds, and three older than every other, which it does not."""
    await insert_generated_books(db, FILLER_BOOKS, author="Common Author")
    await insert_books(db, [Row(title="Zanzibar Nights", created_at=datetime(2021, 1, 1, tzinfo=UTC))])
    await insert_books(
        db, [Row(title=f"Zanzibar Days {n}", created_at=datetime(2010, 1, n, tzinfo=UTC)) for n in range(1, 4)]
    )


def _page_statements(statements: list[str]) -> list[str]:
    return [statement for statement in statements if "FROM book" in statement]


async def test_a_common_word_fills_each_page_from_the_window_in_one_query(
    client: ApiClient, db: asyncpg.Connection, database_url: str, large_catalogue: None
) -> None:
    expected = await reference_ids(db, "-created_at", f"{COMMON_WORD}:*")
    params = {"q": COMMON_WORD, "limit": 20}
    with statement_log(database_url) as log, log.capture() as statements:
        pages = [await get_page(client, params)]
        while len(pages) < 3 and (cursor := pages[-1].next_cursor) is not None:
            pages.append(await get_page(client, {**params, "cursor": cursor}))
    assert ids_of(pages) == expected[:60]
    assert len(_page_statements(statements)) == len(pages), statements


@pytest.mark.parametrize("sort", ["-created_at", "title"])
async def test_a_rare_word_outside_the_window_is_found_through_the_search_index(
    client: ApiClient, db: asyncpg.Connection, database_url: str, large_catalogue: None, sort: str
) -> None:
    expected = await reference_ids(db, sort, f"{RARE_WORD}:*")
    assert len(expected) == 4
    with statement_log(database_url) as log, log.capture() as statements:
        pages = await walk_forward(client, {"q": RARE_WORD, "sort": sort}, itertools.repeat(2))
    assert ids_of(pages) == expected
    # Each page: the window (too few matches), then every match from the index.
    assert len(_page_statements(statements)) == 2 * len(pages), statements


@pytest.mark.parametrize("word", [COMMON_WORD, RARE_WORD])
@pytest.mark.parametrize("from_the_middle", [False, True], ids=["first-page", "after-a-position"])
async def test_window_and_index_queries_list_the_books_of_the_reference_query(
    db: asyncpg.Connection, large_catalogue: None, word: str, from_the_middle: bool
) -> None:
    expected = await reference_ids(db, "-created_at", f"{word}:*")
    position = None
    if from_the_middle:
        middle = await db.fetchrow("SELECT created_at, id FROM book WHERE id = $1", expected[len(expected) // 2])
        position = PagePosition("after", middle["created_at"], middle["id"])
        expected = expected[len(expected) // 2 + 1 :]
    filters = BookFilters(q=word, limit=50, position=position)
    window_sql, window_args = book_page_query(filters, search_window=SEARCH_WINDOW)
    index_sql, index_args = book_page_query(filters)
    from_the_window = [row["id"] for row in await db.fetch(window_sql, *window_args)]
    from_the_index = [row["id"] for row in await db.fetch(index_sql, *index_args)]
    assert from_the_index == expected[:51]
    # The window holds a prefix of the listing: all of it when it fills the page (limit + 1 rows),
    # else only the matches among its rows, which tells the caller to ask the index.
    assert from_the_window == expected[: len(from_the_window)]
    assert (len(from_the_window) == 51) is (word == COMMON_WORD)


# --- readers whose neighbourhood disappeared, and the longest cursors -----------------------------


async def test_a_previous_page_holds_only_books_before_the_cursor(client: ApiClient, db: asyncpg.Connection) -> None:
    ids = await insert_books(db, [Row(title=f"T{n}") for n in range(6)])
    offset_page = await get_page(client, {"sort": "title", "limit": 4, "offset": 2})
    back = await get_page(client, {"sort": "title", "limit": 4, "cursor": offset_page.prev_cursor})
    assert (back.ids, back.prev_cursor) == (ids[:2], None)
    assert (await get_page(client, {"sort": "title", "limit": 4, "cursor": back.next_cursor})).ids == ids[2:]


async def test_going_back_to_a_start_emptied_meanwhile_leads_on_to_where_the_reader_was(
    client: ApiClient, db: asyncpg.Connection
) -> None:
    await insert_books(db, [Row(title=f"T{n}") for n in range(6)])
    first = await get_page(client, {"sort": "title", "limit": 3})
    second = await get_page(client, {"sort": "title", "limit": 3, "cursor": first.next_cursor})
    await db.execute("DELETE FROM book WHERE id = ANY($1::bigint[])", first.ids)
    back = await get_page(client, {"sort": "title", "limit": 3, "cursor": second.prev_cursor})
    assert (back.ids, back.prev_cursor) == ([], None)
    assert (await get_page(client, {"sort": "title", "limit": 3, "cursor": back.next_cursor})).ids == second.ids


@pytest.mark.parametrize("sort", ["title", "-title"])
async def test_a_page_emptied_meanwhile_still_leads_back_to_the_book_before_it(
    client: ApiClient, db: asyncpg.Connection, sort: str
) -> None:
    await insert_books(db, [Row(title=f"T{n}") for n in range(4)])
    first = await get_page(client, {"sort": sort, "limit": 2})
    second = await get_page(client, {"sort": sort, "limit": 2, "cursor": first.next_cursor})
    await db.execute("DELETE FROM book WHERE id = ANY($1::bigint[])", second.ids)
    emptied = await get_page(client, {"sort": sort, "limit": 2, "cursor": first.next_cursor})
    assert (emptied.ids, emptied.next_cursor) == ([], None)
    back = await get_page(client, {"sort": sort, "limit": 2, "cursor": emptied.prev_cursor})
    assert back.ids == first.ids


@pytest.mark.parametrize(("title", "author"), [("書" * 300, "Anonymous"), ("Poems", "😀" * 200)])
async def test_cursors_of_the_longest_non_ascii_sort_keys_are_accepted(
    client: ApiClient, db: asyncpg.Connection, title: str, author: str
) -> None:
    await insert_books(db, [Row(title=title, author=author)] * 3)
    for sort in ("title", "author"):
        pages = await walk_forward(client, {"sort": sort}, itertools.repeat(1))
        assert len(pages) == 3, sort


async def test_cursors_of_a_price_filtered_listing_walk_it(client: ApiClient, db: asyncpg.Connection) -> None:
    prices = [Decimal("5.00"), Decimal("7.50"), Decimal("7.50"), Decimal("9.99"), Decimal("12.00")]
    ids = await insert_books(db, [Row(title=f"P{n}", price=price) for n, price in enumerate(prices)])
    params = {"min_price": "7.5", "max_price": "10", "sort": "-price"}
    pages = await walk_forward(client, params, itertools.repeat(1))
    assert ids_of(pages) == [ids[3], ids[2], ids[1]]


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"sort": ["bogus", "title"]}, "sort"),
        ({"q": ["garden", "tide"]}, "q"),
        ({"limit": ["3", "5"]}, "limit"),
        ({"include_total": ["true", "false"]}, "include_total"),
        ({"q": " ".join(f"w{n}" for n in range(11))}, "q"),
        ({"q": "_ __"}, "q"),
    ],
)
async def test_repeated_parameters_and_unsearchable_text_are_a_400_naming_the_parameter(
    client: ApiClient, params: dict[str, Any], key: str
) -> None:
    response = await client.get(BOOKS, params=params)
    assert_problem(response, 400)
    assert [error["key"] for error in response.json()["errors"]] == [key]


async def test_a_cursor_with_offset_zero_is_a_400_naming_offset(client: ApiClient, title_page: Page) -> None:
    response = await client.get(BOOKS, params={"sort": "title", "offset": 0, "cursor": title_page.next_cursor})
    assert_problem(response, 400)
    assert [error["key"] for error in response.json()["errors"]] == ["offset"]
