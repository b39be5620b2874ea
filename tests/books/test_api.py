"""Books API: CRUD, ETags and conditional writes, permissions, listing, filters and pagination."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from bookstore.books.tables import BookTable
from tests.books.test_pagination import page_links
from tests.helpers import Account, ApiClient, assert_problem, book_payload, unique_isbn

BOOKS = "/api/v1/books"


def book_url(book_id: int) -> str:
    return f"{BOOKS}/{book_id}"


# --- create and read ------------------------------------------------------------------------


async def test_create_returns_the_book_with_location_and_etag(client: ApiClient) -> None:
    account = await client.account()
    response = await client.post(BOOKS, json=book_payload(isbn="0-441-17271-7", price=9.9), headers=account.headers)
    assert response.status_code == 201
    book = response.json()
    assert response.headers["location"] == book_url(book["id"])
    assert response.headers["etag"] == '"1"'
    assert book["isbn"] == "9780441172719"
    assert book["price"] == "9.90"
    assert book["created_by"] == account.id
    assert set(book) == {
        "id",
        "title",
        "author",
        "publish_date",
        "isbn",
        "price",
        "stock",
        "created_at",
        "updated_at",
        "created_by",
        "cover_url",
    }
    assert book["stock"] == 0
    assert book["cover_url"] is None


async def test_get_book_returns_it_with_an_etag(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account)
    response = await client.get(book_url(created["id"]))
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == '"1"'


async def test_get_with_current_if_none_match_is_not_modified(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account)
    response = await client.get(book_url(created["id"]), headers={"If-None-Match": '"1"'})
    assert response.status_code == 304
    assert response.content == b""
    stale = await client.get(book_url(created["id"]), headers={"If-None-Match": '"7"'})
    assert stale.status_code == 200


async def test_head_of_a_book_is_its_get_without_the_body(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account)
    got = await client.get(book_url(created["id"]))
    head = await client.head(book_url(created["id"]))
    assert head.status_code == 200
    assert head.content == b""
    for name in ("etag", "content-type", "content-length"):
        assert head.headers[name] == got.headers[name], name
    missing = await client.head(book_url(999))
    assert (missing.status_code, missing.content) == (404, b"")


async def test_unknown_book_is_not_found(client: ApiClient) -> None:
    assert_problem(await client.get(book_url(123456)), 404)


async def test_duplicate_isbn_conflicts_in_either_form(client: ApiClient) -> None:
    account = await client.account()
    await client.create_book(account, isbn="9780306406157")
    response = await client.post(BOOKS, json=book_payload(isbn="0-306-40615-2"), headers=account.headers)
    assert_problem(response, 409)
    assert await BookTable.count() == 1


# --- update and delete ----------------------------------------------------------------------


async def test_put_replaces_every_field_and_bumps_the_etag(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account)
    replacement = book_payload(title="New Title", author="Someone Else", price="1.00")
    response = await client.put(book_url(created["id"]), json=replacement, headers=account.headers)
    assert response.status_code == 200
    book = response.json()
    assert (book["title"], book["author"], book["price"]) == ("New Title", "Someone Else", "1.00")
    assert book["isbn"] == replacement["isbn"]
    assert response.headers["etag"] == '"2"'
    assert book["updated_at"] > created["updated_at"]


async def test_put_requires_every_field(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account)
    response = await client.put(book_url(created["id"]), json={"title": "Only a title"}, headers=account.headers)
    assert_problem(response, 400)


async def test_patch_changes_only_the_given_fields(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account)
    response = await client.patch(book_url(created["id"]), json={"price": "7.5"}, headers=account.headers)
    assert response.status_code == 200
    book = response.json()
    assert book["price"] == "7.50"
    assert {key: book[key] for key in ("title", "author", "isbn", "publish_date")} == {
        key: created[key] for key in ("title", "author", "isbn", "publish_date")
    }


# --- stock ----------------------------------------------------------------------------------


async def test_create_sets_the_stock(client: ApiClient) -> None:
    account = await client.account()
    book = await client.create_book(account, stock=12)
    assert book["stock"] == 12
    assert (await client.get(book_url(book["id"]))).json()["stock"] == 12


async def test_put_without_stock_leaves_it_unchanged(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account, stock=5)
    response = await client.put(book_url(created["id"]), json=book_payload(), headers=account.headers)
    assert response.status_code == 200
    assert response.json()["stock"] == 5


async def test_put_and_patch_set_the_stock_and_bump_the_etag(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account)
    put = await client.put(book_url(created["id"]), json=book_payload(stock=3), headers=account.headers)
    assert (put.json()["stock"], put.headers["etag"]) == (3, '"2"')
    patched = await client.patch(book_url(created["id"]), json={"stock": 0}, headers=account.headers)
    assert (patched.json()["stock"], patched.headers["etag"]) == (0, '"3"')


@pytest.mark.parametrize("stock", [-1, 1_000_000_001, 1.5, "many", None, True])
async def test_invalid_stock_is_rejected(client: ApiClient, stock: object) -> None:
    account = await client.account()
    created = await client.create_book(account, stock=1)
    for response in (
        await client.post(BOOKS, json=book_payload(stock=stock), headers=account.headers),
        await client.patch(book_url(created["id"]), json={"stock": stock}, headers=account.headers),
    ):
        problem = assert_problem(response, 400)
        assert problem["errors"][0]["key"] == "stock"
    assert (await client.get(book_url(created["id"]))).json()["stock"] == 1


async def test_stock_of_another_users_book_cannot_be_changed(client: ApiClient) -> None:
    owner, other = await client.account(), await client.account()
    created = await client.create_book(owner, stock=2)
    response = await client.patch(book_url(created["id"]), json={"stock": 100}, headers=other.headers)
    assert_problem(response, 403)
    assert (await client.get(book_url(created["id"]))).json()["stock"] == 2


async def test_the_database_refuses_negative_stock() -> None:
    # The CHECK is the backstop behind the orders' conditional decrements.
    await BookTable.insert(
        BookTable(title="T", author="A", publish_date=date(2000, 1, 1), isbn=unique_isbn(), price=Decimal(1))
    )
    with pytest.raises(asyncpg.CheckViolationError):
        await BookTable.update({BookTable.stock: -1}, force=True)


async def test_patch_to_a_taken_isbn_conflicts(client: ApiClient) -> None:
    account = await client.account()
    first = await client.create_book(account)
    second = await client.create_book(account)
    response = await client.patch(book_url(second["id"]), json={"isbn": first["isbn"]}, headers=account.headers)
    assert_problem(response, 409)


async def test_delete_removes_the_book(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account)
    response = await client.delete(book_url(created["id"]), headers=account.headers)
    assert response.status_code == 204
    assert_problem(await client.get(book_url(created["id"])), 404)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_write_to_unknown_book_is_not_found(client: ApiClient, method: str) -> None:
    account = await client.account()
    body = book_payload() if method != "DELETE" else None
    assert_problem(await client.request(method, book_url(999), json=body, headers=account.headers), 404)


# --- If-Match (optimistic concurrency) ------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_stale_if_match_is_refused_and_writes_nothing(client: ApiClient, method: str) -> None:
    account = await client.account()
    created = await client.create_book(account)
    await client.patch(book_url(created["id"]), json={"title": "Second"}, headers=account.headers)
    body = book_payload(title="Third") if method != "DELETE" else None
    response = await client.request(
        method, book_url(created["id"]), json=body, headers={**account.headers, "If-Match": '"1"'}
    )
    assert_problem(response, 412)
    current = await client.get(book_url(created["id"]))
    assert current.json()["title"] == "Second"
    assert current.headers["etag"] == '"2"'


async def test_current_if_match_allows_the_write(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account)
    headers = {**account.headers, "If-Match": '"1"'}
    response = await client.patch(book_url(created["id"]), json={"title": "Changed"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'


@pytest.mark.parametrize("if_match", ["*", '"9", "1"'])
async def test_if_match_star_or_a_list_containing_the_current_tag_allows_the_write(
    client: ApiClient, if_match: str
) -> None:
    account = await client.account()
    created = await client.create_book(account)
    headers = {**account.headers, "If-Match": if_match}
    assert (await client.delete(book_url(created["id"]), headers=headers)).status_code == 204


@pytest.mark.parametrize("if_match", ['W/"1"', "1", "garbage", '""', '"01"', '"+1"'])
async def test_weak_or_malformed_if_match_never_matches(client: ApiClient, if_match: str) -> None:
    account = await client.account()
    created = await client.create_book(account)
    headers = {**account.headers, "If-Match": if_match}
    assert_problem(await client.patch(book_url(created["id"]), json={"title": "X"}, headers=headers), 412)


async def test_concurrent_writes_with_the_same_if_match_let_exactly_one_win(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account)
    headers = {**account.headers, "If-Match": '"1"'}
    responses = await asyncio.gather(
        *(client.patch(book_url(created["id"]), json={"title": f"Writer {n}"}, headers=headers) for n in range(6))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [412] * 5


# --- permissions ----------------------------------------------------------------------------

WRITES: list[tuple[str, Any]] = [("PUT", book_payload), ("PATCH", lambda: {"title": "Renamed"}), ("DELETE", None)]


@pytest.mark.parametrize(("method", "body"), WRITES)
async def test_anonymous_writes_are_unauthorized(client: ApiClient, method: str, body: Any) -> None:
    owner = await client.account()
    created = await client.create_book(owner)
    response = await client.request(method, book_url(created["id"]), json=body() if body else None)
    assert_problem(response, 401)
    assert (await client.get(book_url(created["id"]))).headers["etag"] == '"1"'


async def test_anonymous_create_is_unauthorized(client: ApiClient) -> None:
    assert_problem(await client.post(BOOKS, json=book_payload()), 401)
    assert await BookTable.count() == 0


@pytest.mark.parametrize(("method", "body"), WRITES)
async def test_other_users_writes_are_forbidden(client: ApiClient, method: str, body: Any) -> None:
    owner = await client.account()
    other = await client.account()
    created = await client.create_book(owner)
    response = await client.request(
        method, book_url(created["id"]), json=body() if body else None, headers=other.headers
    )
    assert_problem(response, 403)
    assert (await client.get(book_url(created["id"]))).headers["etag"] == '"1"'


@pytest.mark.parametrize(("method", "body"), WRITES)
async def test_creator_writes_are_allowed(client: ApiClient, method: str, body: Any) -> None:
    owner = await client.account()
    created = await client.create_book(owner)
    response = await client.request(
        method, book_url(created["id"]), json=body() if body else None, headers=owner.headers
    )
    assert response.status_code == (204 if method == "DELETE" else 200)


@pytest.mark.parametrize(("method", "body"), WRITES)
async def test_admin_writes_to_any_book_are_allowed(client: ApiClient, admin: Account, method: str, body: Any) -> None:
    owner = await client.account()
    created = await client.create_book(owner)
    response = await client.request(
        method, book_url(created["id"]), json=body() if body else None, headers=admin.headers
    )
    assert response.status_code == (204 if method == "DELETE" else 200)


async def test_books_of_a_deleted_account_remain_and_only_admins_may_change_them(
    client: ApiClient, admin: Account
) -> None:
    owner = await client.account()
    created = await client.create_book(owner)
    await client.delete("/api/v1/users/me", headers=owner.headers)
    book = (await client.get(book_url(created["id"]))).json()
    assert book["created_by"] is None
    other = await client.account()
    assert_problem(await client.patch(book_url(book["id"]), json={"title": "Mine"}, headers=other.headers), 403)
    assert (await client.patch(book_url(book["id"]), json={"title": "Fixed"}, headers=admin.headers)).status_code == 200


# --- listing --------------------------------------------------------------------------------


@pytest.fixture
async def catalogue(client: ApiClient) -> Account:
    account = await client.account()
    rows = [
        ("The Left Hand of Darkness", "Ursula K. Le Guin", "1969-03-01", "8.99"),
        ("The Dispossessed", "Ursula K. Le Guin", "1974-05-01", "9.50"),
        ("Dune", "Frank Herbert", "1965-08-01", "12.00"),
        ("Kindred", "Octavia E. Butler", "1979-06-01", "15.25"),
        ("Parable of the Sower", "Octavia E. Butler", "1993-10-01", "11.00"),
    ]
    for title, author, published, price in rows:
        await client.create_book(account, title=title, author=author, publish_date=published, price=price)
    return account


async def list_titles(client: ApiClient, **params: Any) -> list[str]:
    response = await client.get(BOOKS, params=params)
    assert response.status_code == 200, response.text
    return [book["title"] for book in response.json()["items"]]


async def test_list_is_public_and_paginated(client: ApiClient, catalogue: Account) -> None:
    response = await client.get(BOOKS, params={"limit": 2, "offset": 2, "sort": "title"})
    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["total_exact"], body["limit"], body["offset"]) == (5, True, 2, 2)
    assert [book["title"] for book in body["items"]] == ["Parable of the Sower", "The Dispossessed"]
    # The neighbouring pages are cursor links with the request's other parameters and no offset.
    assert page_links(response) == {
        "next": {"limit": ["2"], "sort": ["title"], "cursor": [body["next_cursor"]]},
        "prev": {"limit": ["2"], "sort": ["title"], "cursor": [body["prev_cursor"]]},
    }
    following = await client.get(BOOKS, params={"limit": 2, "sort": "title", "cursor": body["next_cursor"]})
    assert [book["title"] for book in following.json()["items"]] == ["The Left Hand of Darkness"]
    preceding = await client.get(BOOKS, params={"limit": 2, "sort": "title", "cursor": body["prev_cursor"]})
    assert [book["title"] for book in preceding.json()["items"]] == ["Dune", "Kindred"]


async def test_last_page_has_no_next_link(client: ApiClient, catalogue: Account) -> None:
    response = await client.get(BOOKS, params={"limit": 5})
    assert "link" not in response.headers
    response = await client.get(BOOKS, params={"limit": 3, "offset": 3})
    assert 'rel="next"' not in response.headers["link"]


async def test_default_sort_is_newest_first(client: ApiClient, catalogue: Account) -> None:
    assert (await list_titles(client))[0] == "Parable of the Sower"


@pytest.mark.parametrize(
    ("sort", "first"),
    [
        ("title", "Dune"),
        ("-title", "The Left Hand of Darkness"),
        ("author", "Dune"),
        ("-author", "The Dispossessed"),  # ties on author fall back to id, descending too
        ("publish_date", "Dune"),
        ("-publish_date", "Parable of the Sower"),
        ("price", "The Left Hand of Darkness"),
        ("-price", "Kindred"),
        ("created_at", "The Left Hand of Darkness"),
    ],
)
async def test_every_sort_orders_the_list(client: ApiClient, catalogue: Account, sort: str, first: str) -> None:
    assert (await list_titles(client, sort=sort))[0] == first


async def test_author_filter_is_exact_and_case_insensitive(client: ApiClient, catalogue: Account) -> None:
    titles = await list_titles(client, author="URSULA K. LE GUIN", sort="title")
    assert titles == ["The Dispossessed", "The Left Hand of Darkness"]
    assert await list_titles(client, author="Ursula") == []


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("darkness", ["The Left Hand of Darkness"]),
        ("butler", ["Kindred", "Parable of the Sower"]),
        ("PARABLE sow", ["Parable of the Sower"]),
        ("para sow", []),  # only the last word is matched as a prefix
        ("dispos", ["The Dispossessed"]),
        ("le guin dune", []),
    ],
)
async def test_search_matches_words_of_title_and_author(
    client: ApiClient, catalogue: Account, q: str, expected: list[str]
) -> None:
    assert await list_titles(client, q=q, sort="title") == expected


async def test_search_ignores_tsquery_operators(client: ApiClient, catalogue: Account) -> None:
    assert await list_titles(client, q="dune & | ! :* (") == ["Dune"]


async def test_isbn_filter_accepts_either_form(client: ApiClient, catalogue: Account) -> None:
    account = catalogue
    await client.create_book(account, title="Numbers", isbn="0-306-40615-2")
    assert await list_titles(client, isbn="0306406152") == ["Numbers"]
    assert await list_titles(client, isbn="978-0-306-40615-7") == ["Numbers"]


async def test_date_filters_are_inclusive(client: ApiClient, catalogue: Account) -> None:
    titles = await list_titles(client, published_after="1969-03-01", published_before="1979-06-01", sort="publish_date")
    assert titles == ["The Left Hand of Darkness", "The Dispossessed", "Kindred"]


async def test_price_filters_are_inclusive(client: ApiClient, catalogue: Account) -> None:
    titles = await list_titles(client, min_price="9.5", max_price="12", sort="price")
    assert titles == ["The Dispossessed", "Parable of the Sower", "Dune"]


async def test_filters_combine(client: ApiClient, catalogue: Account) -> None:
    response = await client.get(BOOKS, params={"author": "octavia e. butler", "max_price": "12"})
    assert response.json()["total"] == 1
    assert response.json()["items"][0]["title"] == "Parable of the Sower"


async def test_offset_past_the_end_gives_an_empty_page(client: ApiClient, catalogue: Account) -> None:
    response = await client.get(BOOKS, params={"offset": 50})
    body = response.json()
    assert (body["items"], body["total"], body["total_exact"]) == ([], 5, True)
    # No book to start a neighbouring page from, so no cursor and no link.
    assert (body["next_cursor"], body["prev_cursor"]) == (None, None)
    assert "link" not in response.headers


@pytest.mark.parametrize(
    ("price", "stored"), [(12, "12.00"), (12.5, "12.50"), ("12", "12.00"), ("0.5", "0.50"), ("0", "0.00")]
)
async def test_price_is_a_json_number_or_a_canonical_decimal_string(
    client: ApiClient, price: object, stored: str
) -> None:
    account = await client.account()
    assert (await client.create_book(account, price=price))["price"] == stored


@pytest.mark.parametrize(
    "title",
    ["\U0001f469\u200d\U0001f4bb Hackers", "\u200f\u05e9\u05dc\u05d5\u05dd\u200f", "a\u200bb"],
    ids=["emoji ZWJ sequence", "Hebrew with right-to-left marks", "zero width space between letters"],
)
async def test_text_with_format_characters_and_a_visible_one_round_trips(client: ApiClient, title: str) -> None:
    account = await client.account()
    assert (await client.create_book(account, title=title))["title"] == title


async def test_publish_date_up_to_a_year_ahead_is_accepted(client: ApiClient) -> None:
    account = await client.account()
    soon = (date.today() + timedelta(days=300)).isoformat()
    book = await client.create_book(account, publish_date=soon)
    assert book["publish_date"] == soon


async def test_isbn_is_unique_per_book(client: ApiClient) -> None:
    account = await client.account()
    isbn = unique_isbn()
    await client.create_book(account, isbn=isbn)
    assert_problem(await client.post(BOOKS, json=book_payload(isbn=isbn), headers=account.headers), 409)


async def test_empty_patch_is_rejected_and_keeps_the_etag(client: ApiClient) -> None:
    account = await client.account()
    created = await client.create_book(account)
    assert_problem(await client.patch(book_url(created["id"]), json={}, headers=account.headers), 400)
    assert (await client.get(book_url(created["id"]))).headers["etag"] == '"1"'


async def test_create_by_an_account_deleted_meanwhile_is_unauthorized(client: ApiClient) -> None:
    from bookstore.books import queries
    from bookstore.books.schemas import BookCreate
    from bookstore.core.errors import AuthenticationError

    account = await client.account()
    await client.delete("/api/v1/users/me", headers=account.headers)
    data = BookCreate(title="T", author="A", publish_date=date(2000, 1, 1), isbn=unique_isbn(), price=Decimal("1.00"))
    with pytest.raises(AuthenticationError):
        await queries.create_book(data, account.id)
    assert await BookTable.count() == 0
