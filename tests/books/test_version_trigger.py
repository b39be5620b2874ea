"""A book's version (its ETag) and ``updated_at`` belong to the database: its trigger bumps them
exactly once for every real change, whoever writes (the API, orders, covers, the Piccolo admin,
psql), keeps both for a save that changes nothing, and refuses a write stating a version other
than the current one (a form loaded before another write)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from piccolo.columns import Column

from bookstore.books.tables import BookTable
from bookstore.core.database import fetch_one
from tests.covers.images import png_bytes
from tests.helpers import Account, ApiClient, assert_problem, order_payload

BOOKS = "/api/v1/books"
ORDERS = "/api/v1/orders"
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


async def version_and_updated_at(book_id: int) -> tuple[int, datetime]:
    row = await fetch_one("SELECT version, updated_at FROM book WHERE id = $1", book_id)
    assert row is not None
    return row["version"], row["updated_at"]


async def admin_form(book_id: int) -> dict[Column | str, Any]:
    """Every column of the book, as the Piccolo admin's edit form loads them (and saves them all
    back with ``Table.update(<every field>).where(pk == id)``)."""
    row = await BookTable.select().where(BookTable.id == book_id).first()
    assert row is not None
    return {column: value for column, value in row.items()}  # typed as update() takes it, not dict[str, Any]


async def etag_of(client: ApiClient, book_id: int) -> str:
    response = await client.get(f"{BOOKS}/{book_id}")
    assert response.status_code == 200, response.text
    etag: str = response.headers["etag"]
    return etag


@pytest.fixture
async def owner(client: ApiClient) -> Account:
    return await client.account()


@pytest.fixture
async def book(client: ApiClient, owner: Account) -> dict[str, Any]:
    return await client.create_book(owner, stock=10)


# --- writers other than the API ------------------------------------------------------------------


async def test_a_raw_sql_price_change_bumps_the_version_once_and_updated_at(book: dict[str, Any]) -> None:
    _, created_at = await version_and_updated_at(book["id"])
    await fetch_one("UPDATE book SET price = 99.99 WHERE id = $1", book["id"])
    version, updated_at = await version_and_updated_at(book["id"])
    assert version == 2
    assert updated_at > created_at


@pytest.mark.parametrize(
    "assignments",
    ["version = 2", "version = version + 1", "version = 2, updated_at = '2000-01-01T00:00:00Z'"],
    ids=["current", "own-bump", "current-and-stale-time"],
)
async def test_a_write_stating_the_current_version_gets_the_old_version_plus_one(
    book: dict[str, Any], assignments: str
) -> None:
    await fetch_one("UPDATE book SET stock = 5 WHERE id = $1", book["id"])
    _, previous_at = await version_and_updated_at(book["id"])
    sql = f"UPDATE book SET price = 1.00, {assignments} WHERE id = $1 RETURNING version, updated_at"  # noqa: S608 - constants only
    row = await fetch_one(sql, book["id"])
    assert row is not None
    assert row["version"] == 3
    assert row["updated_at"] > previous_at
    assert await version_and_updated_at(book["id"]) == (row["version"], row["updated_at"])


@pytest.mark.parametrize("version", [1, 4, 99], ids=["stale", "ahead", "forged"])
async def test_a_write_stating_another_version_is_refused_and_changes_nothing(
    book: dict[str, Any], version: int
) -> None:
    await fetch_one("UPDATE book SET stock = 5 WHERE id = $1", book["id"])
    before = await version_and_updated_at(book["id"])
    with pytest.raises(asyncpg.CheckViolationError, match="changed since it was read: it is at version 2"):
        await fetch_one("UPDATE book SET price = 1.00, version = $2 WHERE id = $1", book["id"], version)
    assert await version_and_updated_at(book["id"]) == before
    row = await fetch_one("SELECT price, stock FROM book WHERE id = $1", book["id"])
    assert row is not None
    assert (str(row["price"]), row["stock"]) == (book["price"], 5)


async def test_an_update_that_changes_nothing_keeps_the_version_and_updated_at(book: dict[str, Any]) -> None:
    before = await version_and_updated_at(book["id"])
    row = await fetch_one(
        "UPDATE book SET price = price, stock = stock, version = 1, updated_at = $2 WHERE id = $1 "
        "RETURNING version, updated_at",
        book["id"],
        LONG_AGO,
    )
    assert row is not None
    assert (row["version"], row["updated_at"]) == before


async def test_an_admin_form_resending_every_column_unchanged_keeps_the_version(book: dict[str, Any]) -> None:
    form = await admin_form(book["id"])
    before = await version_and_updated_at(book["id"])
    await BookTable.update(form).where(BookTable.id == book["id"])
    assert await version_and_updated_at(book["id"]) == before


async def test_an_admin_form_opened_before_another_write_cannot_undo_it(
    client: ApiClient, owner: Account, book: dict[str, Any]
) -> None:
    form = await admin_form(book["id"])
    patched = await client.patch(f"{BOOKS}/{book['id']}", json={"stock": 3}, headers=owner.headers)
    assert patched.headers["etag"] == '"2"'
    with pytest.raises(asyncpg.CheckViolationError):
        await BookTable.update({**form, "title": "Edited in the admin"}).where(BookTable.id == book["id"])
    served = await client.get(f"{BOOKS}/{book['id']}")
    assert (served.json()["stock"], served.json()["title"], served.headers["etag"]) == (3, book["title"], '"2"')


async def test_if_match_with_the_etag_from_before_a_raw_sql_write_is_412(
    client: ApiClient, owner: Account, book: dict[str, Any]
) -> None:
    etag = await etag_of(client, book["id"])
    await fetch_one("UPDATE book SET price = 20.00 WHERE id = $1", book["id"])
    response = await client.patch(
        f"{BOOKS}/{book['id']}", json={"price": "1.00"}, headers={**owner.headers, "If-Match": etag}
    )
    assert_problem(response, 412)
    assert (await client.get(f"{BOOKS}/{book['id']}")).json()["price"] == "20.00"


# --- the API's own writes: one bump each, never two ------------------------------------------------


async def test_a_patch_bumps_the_etag_by_exactly_one(client: ApiClient, owner: Account, book: dict[str, Any]) -> None:
    response = await client.patch(f"{BOOKS}/{book['id']}", json={"price": "13.00"}, headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert await etag_of(client, book["id"]) == '"2"'


async def test_a_patch_to_the_current_values_keeps_the_etag_and_updated_at(
    client: ApiClient, owner: Account, book: dict[str, Any]
) -> None:
    unchanged = {"title": book["title"], "price": book["price"]}
    response = await client.patch(f"{BOOKS}/{book['id']}", json=unchanged, headers={**owner.headers, "If-Match": '"1"'})
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"1"'
    assert response.json() == book


async def test_placing_and_cancelling_an_order_bump_each_book_by_exactly_one(
    client: ApiClient, owner: Account, book: dict[str, Any]
) -> None:
    other = await client.create_book(owner, stock=10)
    untouched = await client.create_book(owner, stock=10)
    buyer = await client.account()
    placed = await client.post(ORDERS, json=order_payload((book["id"], 2), (other["id"], 1)), headers=buyer.headers)
    assert placed.status_code == 201, placed.text
    assert [await etag_of(client, each["id"]) for each in (book, other, untouched)] == ['"2"', '"2"', '"1"']

    cancelled = await client.post(f"{ORDERS}/{placed.json()['id']}/cancel", headers=buyer.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert [await etag_of(client, each["id"]) for each in (book, other, untouched)] == ['"3"', '"3"', '"1"']


async def test_a_cover_bumps_the_etag_once_and_the_same_image_again_not_at_all(
    client: ApiClient, owner: Account, book: dict[str, Any]
) -> None:
    cover_path, image = f"{BOOKS}/{book['id']}/cover", png_bytes()
    for expected_etag in ('"2"', '"2"'):
        uploaded = await client.put(
            cover_path, files={"file": ("cover.png", image, "image/png")}, headers=owner.headers
        )
        assert uploaded.status_code in (200, 201), uploaded.text
        assert await etag_of(client, book["id"]) == expected_etag
    assert (await client.delete(cover_path, headers=owner.headers)).status_code == 204
    assert await etag_of(client, book["id"]) == '"3"'
