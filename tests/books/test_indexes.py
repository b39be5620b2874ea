"""Every filter and sort of GET /books can be answered from an index (the migration's promise),
and no page or count reads more rows than it needs.

With sequential scans priced out (``enable_seqscan = off``) PostgreSQL must still find a plan
that uses the named index; if the index were missing or the query's expression did not match it,
the plan would fall back to a (disabled, hence still chosen) sequential scan.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg
import pytest

from bookstore.books.queries import SEARCH_WINDOW, BookFilters, PagePosition, book_count_query, book_page_query
from bookstore.books.schemas import TOTAL_COUNT_LIMIT, SortField
from tests.books.test_pagination import COLUMN_SORTS, insert_generated_books

SEEDED_BOOKS = 1000
# A value of each sort column to start a keyset page from.
POSITION_KEYS: dict[str, object] = {
    "title": "M",
    "author": "M",
    "publish_date": date(2000, 1, 1),
    "price": Decimal("5.00"),
    "created_at": datetime(2020, 1, 1, tzinfo=UTC),
}


@pytest.fixture
async def seeded_database(app: Any, database_url: str) -> str:
    """The test database with books in it, analysed: on an empty table whose statistics say so,
    every plan costs next to nothing and the planner's choice says nothing about the indexes."""
    connection = await asyncpg.connect(database_url)
    try:
        await insert_generated_books(connection, SEEDED_BOOKS)
        await connection.execute("ANALYZE book")
    finally:
        await connection.close()
    return database_url


async def plan_of(database_url: str, sql: str, args: list[object]) -> str:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("SET enable_seqscan = off")
        rows = await connection.fetch(f"EXPLAIN {sql}", *args)
    finally:
        await connection.close()
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"author": "Ursula K. Le Guin"}, "book_author_lower_idx"),
        ({"q": "darkness"}, "book_search_vector_idx"),
        ({"q": "darkness", "sort": "relevance"}, "book_search_vector_idx"),
        ({"isbn": "9780306406157"}, "book_isbn_key"),
        ({"published_after": date(2000, 1, 1), "sort": "publish_date"}, "book_publish_date_id_idx"),
        ({"published_before": date(2000, 1, 1), "sort": "publish_date"}, "book_publish_date_id_idx"),
        ({"min_price": Decimal("5.00"), "sort": "price"}, "book_price_id_idx"),
        ({"max_price": Decimal("5.00"), "sort": "-price"}, "book_price_id_idx"),
        ({"sort": "title"}, "book_title_id_idx"),
        ({"sort": "-title"}, "book_title_id_idx"),
        ({"sort": "author"}, "book_author_id_idx"),
        ({"sort": "publish_date"}, "book_publish_date_id_idx"),
        ({"sort": "price"}, "book_price_id_idx"),
        ({"sort": "created_at"}, "book_created_at_id_idx"),
        ({"sort": "-created_at"}, "book_created_at_id_idx"),
    ],
)
async def test_filter_or_sort_uses_its_index(seeded_database: str, filters: dict[str, Any], index: str) -> None:
    plan = await plan_of(seeded_database, *book_page_query(BookFilters(**filters)))
    assert index in plan, plan
    assert "Seq Scan" not in plan, plan


@pytest.mark.parametrize("direction", ["after", "before"])
@pytest.mark.parametrize("sort", COLUMN_SORTS)
async def test_keyset_page_starts_in_its_sort_index_at_the_position(
    seeded_database: str, sort: SortField, direction: Literal["after", "before"]
) -> None:
    column = sort.lstrip("-")
    filters = BookFilters(sort=sort, position=PagePosition(direction, POSITION_KEYS[column], 12))
    plan = await plan_of(seeded_database, *book_page_query(filters))
    # Forward in the listing's order means "greater" for an ascending sort.
    comparison = ">" if (direction == "after") != sort.startswith("-") else "<"
    assert f"using book_{column}_id_idx" in plan, plan
    index_condition = next(line for line in plan.splitlines() if "Index Cond:" in line)
    assert column in index_condition, plan
    assert f", id) {comparison} ROW(" in index_condition, plan
    assert "Sort" not in plan, plan


@pytest.mark.parametrize("sort", COLUMN_SORTS)
async def test_search_window_walks_the_sort_index_without_sorting(seeded_database: str, sort: SortField) -> None:
    filters = BookFilters(q="darkness", sort=sort)
    plan = await plan_of(seeded_database, *book_page_query(filters, search_window=SEARCH_WINDOW))
    assert f"Index Scan{' Backward' if sort.startswith('-') else ''} using book_{sort.lstrip('-')}_id_idx" in plan, plan
    assert "Sort" not in plan, plan
    assert "book_search_vector_idx" not in plan, plan


@pytest.mark.parametrize(
    "filters",
    [
        BookFilters(),
        BookFilters(author="filler author"),
        BookFilters(q="filler"),
        BookFilters(q="filler", sort="title"),
    ],
    ids=["all", "filtered", "searched", "searched-by-title"],
)
async def test_count_reads_at_most_one_row_past_the_limit(seeded_database: str, filters: BookFilters) -> None:
    connection = await asyncpg.connect(seeded_database)
    try:
        await insert_generated_books(connection, 3 * TOTAL_COUNT_LIMIT - SEEDED_BOOKS)
        sql, args = book_count_query(filters)
        (row,) = await connection.fetch(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args)
        (counted,) = await connection.fetchrow(sql, *args)
    finally:
        await connection.close()
    (explained,) = json.loads(row[0])
    aggregate = explained["Plan"]
    (limit,) = aggregate["Plans"]
    assert (aggregate["Node Type"], limit["Node Type"]) == ("Aggregate", "Limit"), explained
    assert limit["Actual Rows"] == TOTAL_COUNT_LIMIT + 1, explained
    assert counted == TOTAL_COUNT_LIMIT + 1
