"""The data layer of books (``bookstore.books.queries``) called directly on the real database:
round trips, every filter and sort of the list, and the guards of conditional writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, get_args

import pytest
from litestar import Litestar

from bookstore.accounts.service import register_user
from bookstore.books.queries import (
    Actor,
    BookFilters,
    PagePosition,
    create_book,
    delete_book,
    get_book,
    list_books,
    search_query,
    update_book,
)
from bookstore.books.schemas import Book, BookCreate, SortField
from bookstore.books.tables import BookTable
from bookstore.core.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
)
from tests.helpers import PASSWORD, unique_email, unique_isbn

Write = Callable[[int, Actor, list[int] | None], Awaitable[object]]


def new_book(**overrides: Any) -> BookCreate:
    values: dict[str, Any] = {
        "title": "The Dispossessed",
        "author": "Ursula K. Le Guin",
        "publish_date": date(1974, 5, 1),
        "isbn": unique_isbn(),
        "price": Decimal("12.50"),
    }
    values.update(overrides)
    return BookCreate(**values)


async def new_actor(*, is_admin: bool = False) -> Actor:
    user = await register_user(unique_email(), PASSWORD)
    return Actor(user_id=user.id, is_admin=is_admin)


@pytest.fixture
async def owner(app: Litestar) -> Actor:
    return await new_actor()


@pytest.fixture
async def stranger(app: Litestar) -> Actor:
    return await new_actor()


@pytest.fixture
async def book(owner: Actor) -> Book:
    created, _ = await create_book(new_book(), owner.user_id)
    return created


async def _update(book_id: int, actor: Actor, versions: list[int] | None) -> object:
    return await update_book(book_id, {"title": "Changed"}, actor, versions)


async def _delete(book_id: int, actor: Actor, versions: list[int] | None) -> object:
    await delete_book(book_id, actor, versions)
    return None


each_write = pytest.mark.parametrize("write", [_update, _delete], ids=["update", "delete"])


# --- create and get -------------------------------------------------------------------------


async def test_created_book_reads_back_unchanged_at_version_one(owner: Actor) -> None:
    created, version = await create_book(new_book(title="Dune", author="Frank Herbert"), owner.user_id)
    fetched, fetched_version = await get_book(created.id)
    assert fetched == created
    assert (version, fetched_version) == (1, 1)
    assert (fetched.title, fetched.author, fetched.created_by) == ("Dune", "Frank Herbert", owner.user_id)


async def test_price_reads_back_as_a_decimal_with_two_places(owner: Actor) -> None:
    created, _ = await create_book(new_book(price=Decimal("9.9")), owner.user_id)
    fetched, _ = await get_book(created.id)
    assert isinstance(fetched.price, Decimal)
    assert str(fetched.price) == "9.90"


async def test_database_rounds_a_written_price_to_two_places(owner: Actor, book: Book) -> None:
    updated, _ = await update_book(book.id, {"price": Decimal("7.5")}, owner, None)
    assert str(updated.price) == "7.50"


async def test_isbn_is_stored_in_its_normalised_isbn13_form(owner: Actor) -> None:
    created, _ = await create_book(new_book(isbn="0-441-17271-7"), owner.user_id)
    stored = await BookTable.select(BookTable.isbn).where(BookTable.id == created.id).first()
    assert stored == {"isbn": "9780441172719"}
    assert created.isbn == "9780441172719"


async def test_create_with_a_taken_isbn_raises_conflict(owner: Actor, book: Book) -> None:
    with pytest.raises(ConflictError):
        await create_book(new_book(isbn=book.isbn), owner.user_id)
    assert await BookTable.count() == 1


async def test_create_by_a_missing_user_raises_authentication_error(app: Litestar) -> None:
    with pytest.raises(AuthenticationError):
        await create_book(new_book(), 987654)
    assert await BookTable.count() == 0


async def test_get_of_a_missing_book_raises_not_found(app: Litestar) -> None:
    with pytest.raises(NotFoundError):
        await get_book(987654)


# --- list: filters, totals, pages -----------------------------------------------------------

CATALOGUE = [
    ("The Dispossessed", "Ursula K. Le Guin", date(1974, 5, 1), "12.50"),
    ("The Left Hand of Darkness", "Ursula K. Le Guin", date(1969, 3, 1), "9.50"),
    ("Dune", "Frank Herbert", date(1965, 8, 1), "9.99"),
    ("Dune Messiah", "Frank Herbert", date(1969, 10, 15), "8.00"),
    ("Solaris", "Stanislaw Lem", date(1961, 6, 1), "12.00"),
]


@pytest.fixture
async def catalogue(owner: Actor) -> dict[str, Book]:
    books = {}
    for title, author, published, price in CATALOGUE:
        created, _ = await create_book(
            new_book(title=title, author=author, publish_date=published, price=Decimal(price)), owner.user_id
        )
        books[title] = created
    return books


async def listed_titles(**filters: Any) -> list[str]:
    listing = await list_books(BookFilters(sort="title", **filters))
    return [book.title for book in listing.books]


async def test_list_without_filters_returns_every_book_and_the_exact_total(catalogue: dict[str, Book]) -> None:
    listing = await list_books(BookFilters())
    assert (listing.total, listing.total_exact) == (len(CATALOGUE), True)
    assert {book.id for book in listing.books} == {book.id for book in catalogue.values()}


async def test_author_filter_matches_the_whole_name_in_any_case(catalogue: dict[str, Book]) -> None:
    assert await listed_titles(author="URSULA k. le guin") == ["The Dispossessed", "The Left Hand of Darkness"]
    assert await listed_titles(author="Ursula") == []


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("dune", ["Dune", "Dune Messiah"]),
        ("dun", ["Dune", "Dune Messiah"]),
        ("herb", ["Dune", "Dune Messiah"]),
        ("dune mess", ["Dune Messiah"]),
        ("dun messiah", []),  # only the last word is a prefix
        ("dun mess", []),
        ("messiah dune", ["Dune Messiah"]),
        ("LE GUIN dark", ["The Left Hand of Darkness"]),
        ("dune solaris", []),
        ("& | ! :* (", []),
    ],
)
async def test_q_matches_books_with_every_given_word_the_last_also_as_a_prefix(
    catalogue: dict[str, Book], q: str, expected: list[str]
) -> None:
    assert await listed_titles(q=q) == expected


def test_search_query_keeps_only_words_and_the_last_as_a_prefix() -> None:
    assert search_query("Dune: & Messiah!") == "dune & messiah:*"
    assert search_query("& | ! :* (") is None


def test_search_query_matches_a_repeated_word_once() -> None:
    assert search_query("t T t " * 30 + "dune") == "t & dune:*"


async def test_isbn_filter_matches_exactly_one_book(catalogue: dict[str, Book]) -> None:
    isbn = catalogue["Solaris"].isbn
    assert await listed_titles(isbn=isbn) == ["Solaris"]
    assert await listed_titles(isbn=unique_isbn()) == []


async def test_date_range_includes_both_ends(catalogue: dict[str, Book]) -> None:
    titles = await listed_titles(published_after=date(1965, 8, 1), published_before=date(1969, 10, 15))
    assert titles == ["Dune", "Dune Messiah", "The Left Hand of Darkness"]


async def test_price_range_includes_both_ends(catalogue: dict[str, Book]) -> None:
    titles = await listed_titles(min_price=Decimal("9.50"), max_price=Decimal("12.00"))
    assert titles == ["Dune", "Solaris", "The Left Hand of Darkness"]


async def test_filters_combine(catalogue: dict[str, Book]) -> None:
    assert await listed_titles(author="frank herbert", max_price=Decimal("9.00")) == ["Dune Messiah"]


async def test_total_counts_every_match_not_only_the_page(catalogue: dict[str, Book]) -> None:
    listing = await list_books(BookFilters(limit=2, offset=1, sort="title"))
    assert [book.title for book in listing.books] == ["Dune Messiah", "Solaris"]
    assert (listing.total, listing.total_exact) == (len(CATALOGUE), True)


async def test_total_counts_only_the_filtered_books(catalogue: dict[str, Book]) -> None:
    listing = await list_books(BookFilters(limit=1, author="Frank Herbert"))
    assert (listing.total, listing.total_exact) == (2, True)


async def test_total_of_a_search_counts_its_matches(catalogue: dict[str, Book]) -> None:
    listing = await list_books(BookFilters(limit=1, q="dune"))
    assert (listing.total, listing.total_exact) == (2, True)


async def test_without_include_total_nothing_is_counted(catalogue: dict[str, Book]) -> None:
    listing = await list_books(BookFilters(include_total=False, sort="title"))
    assert (listing.total, listing.total_exact) == (None, False)
    assert len(listing.books) == len(CATALOGUE)


@pytest.mark.parametrize("offset", [len(CATALOGUE), len(CATALOGUE) + 10])
async def test_offset_past_the_end_gives_no_books_but_the_total(catalogue: dict[str, Book], offset: int) -> None:
    listing = await list_books(BookFilters(offset=offset))
    assert (listing.books, listing.total, listing.total_exact) == ([], len(CATALOGUE), True)
    assert (listing.next_position, listing.prev_position) == (None, None)


async def test_positions_lead_from_the_first_page_to_the_last_and_back(catalogue: dict[str, Book]) -> None:
    first = await list_books(BookFilters(limit=3, sort="title"))
    assert [book.title for book in first.books] == ["Dune", "Dune Messiah", "Solaris"]
    assert first.prev_position is None
    assert first.next_position == PagePosition("after", "Solaris", catalogue["Solaris"].id)
    last = await list_books(BookFilters(limit=3, sort="title", position=first.next_position))
    assert [book.title for book in last.books] == ["The Dispossessed", "The Left Hand of Darkness"]
    assert last.next_position is None
    assert last.prev_position == PagePosition("before", "The Dispossessed", catalogue["The Dispossessed"].id)
    back = await list_books(BookFilters(limit=3, sort="title", position=last.prev_position))
    assert back.books == first.books
    assert back.prev_position is None
    assert back.next_position == first.next_position


# --- list: sort orders ----------------------------------------------------------------------

# Every sortable field has ties, so only the id can decide between some books.
TIED = [
    ("Bravo", "Adams", date(2001, 1, 1), "10.00"),
    ("Alpha", "Banks", date(2001, 1, 1), "20.00"),
    ("Bravo", "Banks", date(1999, 1, 1), "10.00"),
    ("Alpha", "Adams", date(1999, 1, 1), "20.00"),
]
EARLIER, LATER = datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC)
COLUMN_SORTS = [sort for sort in get_args(SortField) if sort != "relevance"]


@pytest.fixture
async def tied_books(owner: Actor) -> list[Book]:
    ids = []
    for title, author, published, price in TIED:
        created, _ = await create_book(
            new_book(title=title, author=author, publish_date=published, price=Decimal(price)), owner.user_id
        )
        ids.append(created.id)
    for position, book_id in enumerate(ids):
        created_at = (EARLIER, LATER)[position % 2]
        await BookTable.update({BookTable.created_at: created_at}).where(BookTable.id == book_id)
    return [(await get_book(book_id))[0] for book_id in ids]


@pytest.mark.parametrize("sort", COLUMN_SORTS)
async def test_each_sort_orders_by_its_field_then_by_id_in_the_same_direction(
    tied_books: list[Book], sort: SortField
) -> None:
    field = sort.lstrip("-")
    expected = sorted(tied_books, key=lambda book: (getattr(book, field), book.id), reverse=sort.startswith("-"))
    listing = await list_books(BookFilters(sort=sort))
    assert [book.id for book in listing.books] == [book.id for book in expected]


async def test_relevance_ranks_a_title_match_above_an_author_match(owner: Actor) -> None:
    # The title match is the older book, so the tie-break on id (descending) alone would put it last.
    in_title, _ = await create_book(new_book(title="Foundation", author="Isaac Asimov"), owner.user_id)
    in_author, _ = await create_book(new_book(title="Essays", author="Foundation Press"), owner.user_id)
    listing = await list_books(BookFilters(q="foundation", sort="relevance"))
    assert [book.id for book in listing.books] == [in_title.id, in_author.id]


async def test_default_sort_is_newest_first(owner: Actor) -> None:
    first, _ = await create_book(new_book(), owner.user_id)
    second, _ = await create_book(new_book(), owner.user_id)
    # Timestamps against the order of the ids, so neither the clock nor the id can decide.
    await BookTable.update({BookTable.created_at: LATER}).where(BookTable.id == first.id)
    await BookTable.update({BookTable.created_at: EARLIER}).where(BookTable.id == second.id)
    listing = await list_books(BookFilters())
    assert [book.id for book in listing.books] == [first.id, second.id]


# --- update ---------------------------------------------------------------------------------


async def test_update_by_the_owner_changes_the_fields_and_bumps_the_version(owner: Actor, book: Book) -> None:
    updated, version = await update_book(book.id, {"title": "Changed", "price": Decimal("1.00")}, owner, None)
    assert version == 2
    assert (updated.title, updated.price, updated.author) == ("Changed", Decimal("1.00"), book.author)
    assert updated.created_at == book.created_at
    assert await get_book(book.id) == (updated, 2)


async def test_update_sets_updated_at(owner: Actor, book: Book) -> None:
    # The table's trigger sets updated_at and ignores any value written into it, so the time of
    # the insert (an earlier transaction) is the one to compare with.
    updated, _ = await update_book(book.id, {"title": "Changed"}, owner, None)
    assert updated.updated_at > book.updated_at


async def test_update_to_the_current_values_keeps_the_version_and_updated_at(owner: Actor, book: Book) -> None:
    unchanged, version = await update_book(book.id, {"title": book.title, "price": book.price}, owner, [1])
    assert (unchanged, version) == (book, 1)


async def test_each_update_bumps_the_version_once(owner: Actor, book: Book) -> None:
    for expected_version in (2, 3, 4):
        _, version = await update_book(book.id, {"title": f"Edition {expected_version}"}, owner, None)
        assert version == expected_version


async def test_update_by_an_admin_of_another_users_book_is_allowed(book: Book) -> None:
    admin = await new_actor(is_admin=True)
    updated, version = await update_book(book.id, {"title": "Edited by an admin"}, admin, None)
    assert (updated.title, version, updated.created_by) == ("Edited by an admin", 2, book.created_by)


async def test_update_with_the_current_version_is_allowed(owner: Actor, book: Book) -> None:
    _, version = await update_book(book.id, {"title": "Changed"}, owner, [1])
    assert version == 2


async def test_update_with_a_list_containing_the_current_version_is_allowed(owner: Actor, book: Book) -> None:
    await update_book(book.id, {"title": "Second"}, owner, None)
    _, version = await update_book(book.id, {"title": "Third"}, owner, [1, 2])
    assert version == 3


async def test_update_without_a_version_condition_is_allowed_whatever_the_version(owner: Actor, book: Book) -> None:
    # None is both "no If-Match" and "If-Match: *" (any current version of an existing book).
    await update_book(book.id, {"title": "Second"}, owner, [1])
    _, version = await update_book(book.id, {"title": "Third"}, owner, None)
    assert version == 3


async def test_update_to_a_taken_isbn_raises_conflict_and_changes_nothing(owner: Actor, book: Book) -> None:
    other, _ = await create_book(new_book(), owner.user_id)
    with pytest.raises(ConflictError):
        await update_book(other.id, {"isbn": book.isbn}, owner, None)
    assert await get_book(other.id) == (other, 1)


@pytest.mark.parametrize("column", ["id", "version", "created_by", "created_at", "title = 'x', price"])
async def test_update_of_a_column_that_is_not_writable_raises_value_error(
    owner: Actor, book: Book, column: str
) -> None:
    with pytest.raises(ValueError, match="not writable"):
        await update_book(book.id, {column: 1}, owner, None)
    assert await get_book(book.id) == (book, 1)


async def test_update_without_changes_raises_value_error(owner: Actor, book: Book) -> None:
    # The version is the trigger's, so an update naming no column would be an empty SET.
    with pytest.raises(ValueError, match="no changes"):
        await update_book(book.id, {}, owner, None)


# --- refusals shared by update and delete ---------------------------------------------------


@each_write
async def test_write_by_a_non_owner_raises_permission_denied_and_changes_nothing(
    stranger: Actor, book: Book, write: Write
) -> None:
    with pytest.raises(PermissionDeniedError):
        await write(book.id, stranger, None)
    assert await get_book(book.id) == (book, 1)


@each_write
async def test_write_by_a_non_owner_with_a_stale_version_is_denied_not_precondition_failed(
    stranger: Actor, book: Book, write: Write
) -> None:
    with pytest.raises(PermissionDeniedError):
        await write(book.id, stranger, [7])


@each_write
@pytest.mark.parametrize("versions", [[2], [0, 3], []], ids=["stale", "none-current", "no-usable-tag"])
async def test_write_with_a_version_that_is_not_current_raises_precondition_failed(
    owner: Actor, book: Book, write: Write, versions: list[int]
) -> None:
    with pytest.raises(PreconditionFailedError):
        await write(book.id, owner, versions)
    assert await get_book(book.id) == (book, 1)


@each_write
async def test_write_after_a_concurrent_write_with_the_old_version_raises_precondition_failed(
    owner: Actor, book: Book, write: Write
) -> None:
    await update_book(book.id, {"title": "Someone else's edit"}, owner, [1])
    with pytest.raises(PreconditionFailedError):
        await write(book.id, owner, [1])
    assert (await get_book(book.id))[1] == 2


@each_write
async def test_write_to_a_missing_book_raises_not_found(owner: Actor, write: Write) -> None:
    with pytest.raises(NotFoundError):
        await write(987654, owner, None)


@each_write
async def test_write_to_a_missing_book_by_an_admin_raises_not_found(app: Litestar, write: Write) -> None:
    admin = await new_actor(is_admin=True)
    with pytest.raises(NotFoundError):
        await write(987654, admin, None)


# --- delete ---------------------------------------------------------------------------------


async def test_delete_by_the_owner_removes_the_book(owner: Actor, book: Book) -> None:
    await delete_book(book.id, owner, None)
    with pytest.raises(NotFoundError):
        await get_book(book.id)


async def test_delete_by_an_admin_of_another_users_book_removes_it(book: Book) -> None:
    admin = await new_actor(is_admin=True)
    await delete_book(book.id, admin, None)
    assert await BookTable.count() == 0


@pytest.mark.parametrize("versions", [[1], [0, 1], None], ids=["current", "list-with-current", "any"])
async def test_delete_with_a_matching_version_removes_the_book(
    owner: Actor, book: Book, versions: list[int] | None
) -> None:
    await delete_book(book.id, owner, versions)
    assert await BookTable.count() == 0


async def test_deleted_book_cannot_be_deleted_again(owner: Actor, book: Book) -> None:
    await delete_book(book.id, owner, None)
    with pytest.raises(NotFoundError):
        await delete_book(book.id, owner, None)
