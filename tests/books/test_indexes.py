"""Every filter and sort of GET /books can be answered from an index (the migration's promise).

With sequential scans priced out (``enable_seqscan = off``) PostgreSQL must still find a plan
that uses the named index; if the index were missing or the query's expression did not match it,
the plan would fall back to a (disabled, hence still chosen) sequential scan.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from bookstore.books.queries import BookFilters, book_page_query


async def plan_of(database_url: str, filters: BookFilters) -> str:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("SET enable_seqscan = off")
        sql, args = book_page_query(filters)
        rows = await connection.fetch(f"EXPLAIN {sql}", *args)
    finally:
        await connection.close()
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"author": "Ursula K. Le Guin"}, "book_author_lower_idx"),
        ({"q": "darkness"}, "book_search_idx"),
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
async def test_filter_or_sort_uses_its_index(app: Any, database_url: str, filters: dict[str, Any], index: str) -> None:
    plan = await plan_of(database_url, BookFilters(**filters))
    assert index in plan, plan
    assert "Seq Scan" not in plan, plan
