"""Bad input: every case gets the right 4xx as problem+json, never a 500, and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bookstore.books.tables import BookTable
from tests.helpers import Account, ApiClient, assert_problem, book_payload

BOOKS = "/api/v1/books"
# A valid ISBN written in fullwidth digits, which are digits to Unicode but not to an ISBN.
FULLWIDTH_ISBN = "".join(chr(0xFF10 + int(digit)) for digit in "9780306406157")


@pytest.fixture
async def writer(client: ApiClient) -> Account:
    return await client.account()


async def assert_no_books_written() -> None:
    assert await BookTable.count() == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 301}, "title"),
        ({"title": "nul\u0000byte"}, "title"),
        ({"title": "line\nbreak"}, "title"),
        ({"title": "final newline\n"}, "title"),
        ({"title": "\u200b"}, "title"),  # only a ZERO WIDTH SPACE: nothing visible
        ({"title": "line\u2028separator"}, "title"),
        ({"title": 42}, "title"),
        ({"author": ""}, "author"),
        ({"author": "y" * 201}, "author"),
        ({"author": None}, "author"),
        ({"price": "-0.01"}, "price"),
        ({"price": -5}, "price"),
        ({"price": "12.345"}, "price"),
        ({"price": "NaN"}, "price"),
        ({"price": "Infinity"}, "price"),
        ({"price": "1e400"}, "price"),
        ({"price": "abc"}, "price"),
        ({"price": [1]}, "price"),
        ({"price": True}, "price"),
        ({"price": "1_000"}, "price"),
        ({"price": "\uff11\uff12"}, "price"),  # fullwidth 12
        ({"price": " 12.5 "}, "price"),
        ({"price": "1e3"}, "price"),
        ({"publish_date": "2020-02-30"}, "publish_date"),
        ({"publish_date": "yesterday"}, "publish_date"),
        ({"publish_date": "2999-01-01"}, "publish_date"),
        ({"isbn": "978-0-306-40615-8"}, "isbn"),
        ({"isbn": "0-306-40615-3"}, "isbn"),
        ({"isbn": "123"}, "isbn"),
        ({"isbn": "977-0-306-40615-7"}, "isbn"),
        ({"isbn": FULLWIDTH_ISBN}, "isbn"),
        ({"unknown_field": 1}, None),
    ],
)
async def test_invalid_book_fields_are_rejected(
    client: ApiClient, writer: Account, overrides: dict[str, Any], field: str | None
) -> None:
    response = await client.post(BOOKS, json=book_payload(**overrides), headers=writer.headers)
    body = assert_problem(response, 400)
    if field is not None:
        assert body["errors"][0]["key"] == field, body
    await assert_no_books_written()


async def test_missing_field_is_rejected(client: ApiClient, writer: Account) -> None:
    payload = book_payload()
    del payload["isbn"]
    body = assert_problem(await client.post(BOOKS, json=payload, headers=writer.headers), 400)
    assert "isbn" in json.dumps(body)
    await assert_no_books_written()


@pytest.mark.parametrize(
    "content",
    [b"{", b'{"title": "x",}', b"[1, 2", b"nul", b'{"title": "\\ud800"}', b"\xff\xfe", b"", b'{"title": "caf\xe9"}'],
)
async def test_malformed_json_is_rejected(client: ApiClient, writer: Account, content: bytes) -> None:
    headers = {**writer.headers, "content-type": "application/json"}
    assert_problem(await client.post(BOOKS, content=content, headers=headers), 400)
    await assert_no_books_written()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
async def test_wrong_content_type_is_unsupported(client: ApiClient, writer: Account, content_type: str) -> None:
    headers = {**writer.headers, "content-type": content_type}
    response = await client.post(BOOKS, content=json.dumps(book_payload()).encode(), headers=headers)
    assert_problem(response, 415)
    await assert_no_books_written()


async def test_json_array_instead_of_object_is_rejected(client: ApiClient, writer: Account) -> None:
    assert_problem(await client.post(BOOKS, json=[book_payload()], headers=writer.headers), 400)


async def test_body_of_several_megabytes_is_too_large(client: ApiClient, writer: Account) -> None:
    payload = book_payload(title="x" * (3 * 1024 * 1024))
    assert_problem(await client.post(BOOKS, json=payload, headers=writer.headers), 413)
    await assert_no_books_written()


@pytest.mark.parametrize("depth", [1_000, 20_000])
async def test_deeply_nested_json_is_rejected(client: ApiClient, writer: Account, depth: int) -> None:
    content = b'{"title": ' + b"[" * depth + b"]" * depth + b"}"
    headers = {**writer.headers, "content-type": "application/json"}
    assert_problem(await client.post(BOOKS, content=content, headers=headers), 400)
    await assert_no_books_written()


@pytest.mark.parametrize(
    "book_id", ["99999999999999999999999", "9223372036854775808", "-1", "0", "abc", "1.5", "1e3", "%00"]
)
async def test_out_of_range_or_non_numeric_ids_are_client_errors(client: ApiClient, book_id: str) -> None:
    response = await client.get(f"{BOOKS}/{book_id}")
    assert response.status_code in {400, 404}, response.text
    assert_problem(response, response.status_code)


@pytest.mark.parametrize("book_id", ["01", "+1", "%201", "1%0A", "0_1", "%D9%A1"])
async def test_ids_not_written_canonically_are_rejected(client: ApiClient, writer: Account, book_id: str) -> None:
    created = await client.create_book(writer)
    assert created["id"] == 1  # the book each spelling above would otherwise reach
    body = assert_problem(await client.get(f"{BOOKS}/{book_id}"), 400)
    assert [(error["key"], error["source"]) for error in body["errors"]] == [("book_id", "path")]


async def test_largest_documented_id_is_simply_not_found(client: ApiClient) -> None:
    assert_problem(await client.get(f"{BOOKS}/{10**18}"), 404)


async def test_out_of_range_id_on_a_write_is_a_client_error(client: ApiClient, writer: Account) -> None:
    response = await client.patch(f"{BOOKS}/99999999999999999999", json={"title": "x"}, headers=writer.headers)
    assert response.status_code in {400, 404}
    assert_problem(response, response.status_code)


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"limit": "1000000"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "99999999999999999999"}, "offset"),
        ({"sort": "isbn"}, "sort"),
        ({"sort": "--title"}, "sort"),
        ({"published_after": "2020-13-01"}, "published_after"),
        ({"min_price": "-1"}, "min_price"),
        ({"max_price": "cheap"}, "max_price"),
        ({"max_price": "NaN"}, "max_price"),
        ({"min_price": "1.234"}, "min_price"),
        ({"isbn": "978-0-306-40615-8"}, "isbn"),
        ({"q": "!!!"}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"author": "nul\u0000"}, "author"),
        ({"q": "dune\n"}, "q"),
        ({"limit": "1e2"}, "limit"),
        ({"limit": "05"}, "limit"),
        ({"offset": "-0"}, "offset"),
        ({"min_price": "1_000"}, "min_price"),
        ({"max_price": "+12"}, "max_price"),
    ],
)
async def test_invalid_list_parameters_are_rejected(client: ApiClient, params: dict[str, str], key: str) -> None:
    body = assert_problem(await client.get(BOOKS, params=params), 400)
    assert body["errors"][0]["key"] == key, body


async def test_validation_detail_names_what_failed_without_echoing_the_request(client: ApiClient) -> None:
    response = await client.get(BOOKS, params={"limit": "1000", "note": "echo-me"})
    body = assert_problem(response, 400)
    assert body["detail"] == "Invalid input: `limit` in the query."
    assert "echo-me" not in response.text
    assert body["errors"] == [{"message": "Expected `int` <= 100", "key": "limit", "source": "query"}]


async def test_unsupported_method_is_not_allowed(client: ApiClient) -> None:
    assert_problem(await client.request("TRACE", BOOKS), 405)


async def test_unknown_route_is_not_found(client: ApiClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404)


@pytest.mark.parametrize(
    "body",
    [{"title": ""}, {"price": "-1"}, {"isbn": "123"}, {"publish_date": "nope"}, {"title": None}, {"extra": 1}],
)
async def test_invalid_patch_changes_nothing(client: ApiClient, writer: Account, body: dict[str, Any]) -> None:
    created = await client.create_book(writer)
    response = await client.patch(f"{BOOKS}/{created['id']}", json=body, headers=writer.headers)
    assert_problem(response, 400)
    current = await client.get(f"{BOOKS}/{created['id']}")
    assert current.json() == created
    assert current.headers["etag"] == '"1"'


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        (BOOKS, "GET, HEAD, OPTIONS, POST"),
        (f"{BOOKS}/1", "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"),
        ("/api/v1/users/me", "DELETE, GET, HEAD, OPTIONS, PATCH"),
        ("/api/v1/auth/login", "OPTIONS, POST"),
    ],
)
async def test_options_lists_every_method_of_the_path(client: ApiClient, path: str, allow: str) -> None:
    response = await client.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == allow
