"""Seeding the catalogue (``bookstore.books.seed``) on the real database: valid ISBNs unique in
the table, creation times in insertion order, reproducible books, a populated search document,
and the table's indexes as they were, whether the seed rebuilt them or kept them in place."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from litestar import Litestar

from bookstore.books.isbn import normalise_isbn
from bookstore.books.seed import seed_books
from bookstore.testing import fetch_rows

SEEDED = 3000  # a seed into an empty table: it rebuilds the secondary indexes
TOPPED_UP = 900  # under a third of SEEDED: added with the indexes in place
SPANNING_CHUNKS = 25_000  # more than two of the chunks the seeder draws at a time (10,000)
# Each index of the book table: its definition and its object id (new once rebuilt).
INDEXES = (
    "SELECT indexname, indexdef, format('%I.%I', schemaname, indexname)::regclass::oid "
    "FROM pg_indexes WHERE tablename = 'book' ORDER BY indexname"
)
CONSTRAINT_INDEXES = {"book_pkey", "book_isbn_key"}


@pytest.fixture
def database(app: Litestar, database_url: str) -> str:
    """The migrated test database (emptied after the test)."""
    return database_url


def isbns_by_id(database: str) -> list[str]:
    return [row[0] for row in fetch_rows(database, "SELECT isbn FROM book ORDER BY id")]


async def test_isbns_are_valid_and_unique_across_seeds(database: str) -> None:
    await seed_books(SEEDED, random_seed=1)
    await seed_books(TOPPED_UP, random_seed=2)
    isbns = isbns_by_id(database)
    assert len(isbns) == SEEDED + TOPPED_UP
    assert len(set(isbns)) == len(isbns)
    assert [isbn for isbn in isbns if normalise_isbn(isbn) != isbn] == []


async def test_isbns_that_books_already_have_are_drawn_again(database: str) -> None:
    await seed_books(500, random_seed=7)
    drawn = isbns_by_id(database)
    fetch_rows(database, "TRUNCATE book RESTART IDENTITY CASCADE")
    taken = drawn[::50]
    fetch_rows(
        database,
        "INSERT INTO book (title, author, publish_date, isbn, price) "
        "SELECT 'Taken', 'Someone Else', current_date, isbn, 10 FROM unnest($1::varchar[]) AS taken(isbn)",
        taken,
    )
    await seed_books(500, random_seed=7)
    seeded = [row[0] for row in fetch_rows(database, "SELECT isbn FROM book WHERE title <> 'Taken' ORDER BY id")]
    assert len(seeded) == 500
    assert set(seeded) & set(taken) == set()
    assert set(drawn) - set(taken) <= set(seeded)
    assert [isbn for isbn in seeded if normalise_isbn(isbn) != isbn] == []


async def test_a_large_seed_rebuilds_the_same_indexes(database: str) -> None:
    before = fetch_rows(database, INDEXES)
    await seed_books(SEEDED)
    after = fetch_rows(database, INDEXES)
    assert [row[:2] for row in after] == [row[:2] for row in before]
    rebuilt = {name for (name, _, old), (_, _, new) in zip(before, after, strict=True) if old != new}
    assert rebuilt == {row[0] for row in before} - CONSTRAINT_INDEXES
    assert fetch_rows(database, "SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = 'book'::regclass")[0][0]


async def test_a_small_seed_keeps_the_indexes_in_place(database: str) -> None:
    await seed_books(SEEDED, random_seed=1)
    before = fetch_rows(database, INDEXES)
    await seed_books(TOPPED_UP, random_seed=2)
    assert fetch_rows(database, INDEXES) == before


async def test_the_search_document_finds_seeded_titles_and_authors(database: str) -> None:
    await seed_books(SEEDED, random_seed=3)
    (counts,) = fetch_rows(
        database,
        "SELECT count(*) FILTER (WHERE search_vector IS NULL), "
        "count(*) FILTER (WHERE search_vector @@ to_tsquery('simple', 'lighthouse')), "
        "count(*) FILTER (WHERE title LIKE '%Lighthouse%'), "
        "count(*) FILTER (WHERE search_vector @@ to_tsquery('simple', 'ishiguro')), "
        "count(*) FILTER (WHERE author LIKE '%Ishiguro') FROM book",
    )
    missing, found_by_title, with_title_word, found_by_author, with_author_word = counts
    assert missing == 0
    assert found_by_title == with_title_word > 0
    assert found_by_author == with_author_word > 0


async def test_creation_times_are_one_millisecond_apart_up_to_now(database: str) -> None:
    await seed_books(SPANNING_CHUNKS)
    ((gaps, unchanged, not_in_future),) = fetch_rows(
        database,
        "SELECT array_agg(DISTINCT gap), bool_and(updated_at = created_at), max(created_at) <= now() "
        "FROM (SELECT *, created_at - lag(created_at) OVER (ORDER BY id) AS gap FROM book) AS book",
    )
    assert set(gaps) - {None} == {timedelta(milliseconds=1)}
    assert unchanged
    assert not_in_future


async def test_seeded_books_come_after_the_newest_book(database: str) -> None:
    # Inserted a tenth of a second ago: less room than 1,000 books one millisecond apart need.
    fetch_rows(
        database,
        "INSERT INTO book (title, author, publish_date, isbn, price, created_at, updated_at) "
        "VALUES ('Newest', 'Someone Else', current_date, '9780306406157', 10, "
        "now() - interval '100 milliseconds', now() - interval '100 milliseconds')",
    )
    await seed_books(1000)
    ((count, increasing, not_in_future),) = fetch_rows(
        database,
        "SELECT count(*), bool_and(gap > interval '0'), max(created_at) <= now() "
        "FROM (SELECT created_at - lag(created_at) OVER (ORDER BY id) AS gap, created_at FROM book) AS book",
    )
    assert count == 1001
    assert increasing
    assert not_in_future


async def test_the_same_seed_gives_the_same_books_on_a_fresh_table(database: str) -> None:
    def books() -> list[tuple[Any, ...]]:
        return [
            tuple(row)
            for row in fetch_rows(database, "SELECT title, author, publish_date, isbn, price FROM book ORDER BY id")
        ]

    await seed_books(500, random_seed=42)
    first = books()
    fetch_rows(database, "TRUNCATE book RESTART IDENTITY CASCADE")
    await seed_books(500, random_seed=42)
    again = books()
    fetch_rows(database, "TRUNCATE book RESTART IDENTITY CASCADE")
    await seed_books(500, random_seed=43)
    other = books()
    assert again == first
    assert len({book[3] for book in other} & {book[3] for book in first}) < 5


async def test_prices_and_publish_dates_are_plausible(database: str) -> None:
    await seed_books(SEEDED, random_seed=5)
    ((cheapest, dearest, oldest, newest, titles, authors),) = fetch_rows(
        database,
        "SELECT min(price), max(price), min(publish_date), max(publish_date), "
        "count(DISTINCT title), count(DISTINCT author) FROM book",
    )
    today = date.today()
    assert Decimal("1.99") <= cheapest < dearest <= Decimal("89.98")
    assert today - timedelta(days=60 * 365) < oldest < newest <= today
    assert titles > SEEDED // 2
    assert authors > 300


async def test_every_seeded_book_has_the_stock_asked_for(database: str) -> None:
    await seed_books(TOPPED_UP, random_seed=6)
    await seed_books(TOPPED_UP, random_seed=7, stock=25)
    stocks = fetch_rows(database, "SELECT stock, count(*) FROM book GROUP BY stock ORDER BY stock")
    assert stocks == [(0, TOPPED_UP), (25, TOPPED_UP)]
