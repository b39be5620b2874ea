"""Realistic demo books in bulk: plausible titles and authors, valid ISBN-13s that no book has
yet, sane prices, and creation times one millisecond apart up to now.

The rows are drawn in Python from precomputed vocabularies and loaded with one ``COPY`` in one
transaction. A seed that is large next to the table drops the table's secondary indexes first
and builds them again afterwards, about twice as fast as keeping them up to date row by row
(a million books into an empty table); the indexes behind constraints (primary key, unique ISBN)
stay and check every row. A VACUUM (ANALYZE) afterwards gives the planner its statistics.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import product

import asyncpg

from bookstore.books.isbn import isbn13_check_digit
from bookstore.core.database import get_engine

__all__ = ["COMMON_WORDS", "seed_books"]

_ADJECTIVES = (
    "Silent",
    "Broken",
    "Golden",
    "Hidden",
    "Last",
    "Distant",
    "Burning",
    "Frozen",
    "Quiet",
    "Wild",
    "Forgotten",
    "Crimson",
    "Endless",
    "Hollow",
    "Northern",
    "Secret",
    "Bitter",
    "Velvet",
    "Iron",
    "Paper",
)
_NOUNS = (
    "River",
    "Garden",
    "Empire",
    "Harbour",
    "Mountain",
    "Library",
    "Winter",
    "Orchard",
    "Lighthouse",
    "Kingdom",
    "Archive",
    "Forest",
    "Station",
    "Compass",
    "Voyage",
    "Mirror",
    "Island",
    "Letters",
    "Machine",
    "Tide",
)
_PATTERNS = ("The {adj} {noun}", "{noun} of the {adj} {noun2}", "A {adj} {noun}", "The {noun}'s {noun2}")
_FIRST_NAMES = (
    "Ada",
    "Chinua",
    "Haruki",
    "Ursula",
    "Gabriel",
    "Toni",
    "Italo",
    "Zadie",
    "Kazuo",
    "Octavia",
    "Jorge",
    "Virginia",
    "Orhan",
    "Chimamanda",
    "Wisława",
    "Fyodor",
    "Elena",
    "Salman",
    "Isabel",
    "Naguib",
)
_LAST_NAMES = (
    "Achebe",
    "Murakami",
    "Le Guin",
    "Márquez",
    "Morrison",
    "Calvino",
    "Smith",
    "Ishiguro",
    "Butler",
    "Borges",
    "Woolf",
    "Pamuk",
    "Adichie",
    "Szymborska",
    "Dostoevsky",
    "Ferrante",
    "Rushdie",
    "Allende",
    "Mahfouz",
    "Lovelace",
)
# Each pattern filled with every combination of words (a pattern ignores the words it has no
# place for), so that one uniform draw picks the pattern and then its words uniformly.
# Words of the seeded titles and authors, each in a few per cent of the books (what benchmarks
# search for as "a common word").
COMMON_WORDS = tuple(sorted({*_ADJECTIVES, *_NOUNS, *_LAST_NAMES}))
_TITLES = tuple(
    pattern.format(adj=adjective, noun=noun, noun2=noun2)
    for pattern, adjective, noun, noun2 in product(_PATTERNS, _ADJECTIVES, _NOUNS, _NOUNS)
)
_AUTHORS = tuple(f"{first} {last}" for first, last in product(_FIRST_NAMES, _LAST_NAMES))
_PRICES = tuple(Decimal(cents) / 100 for cents in range(199, 8999))  # 1.99 to 89.98
_PUBLISHED_WITHIN_DAYS = 60 * 365
# ISBN-13 stems: 978 or 979 and nine more digits; the thirteenth digit is the check digit.
_ISBN_STEMS = range(978_000_000_000, 980_000_000_000)
# The check digit is minus the digits' weighted sum (weights 1, 3, 1, 3, ...) mod 10, and four
# digits span the weights' cycle, so a stem's check digit is the sum of its three four-digit
# groups' check digits mod 10. Looked up here, a million ISBNs take 0.7 s instead of 5.6 s.
_GROUP_CHECK_DIGITS = tuple(int(isbn13_check_digit(f"{group:04d}")) for group in range(10_000))

_CREATION_INTERVAL = timedelta(milliseconds=1)
_SMALLEST_INTERVAL = timedelta(microseconds=1)  # the resolution of timestamptz
# Books drawn at a time while COPY sends the previous ones: the server works on one chunk while
# the next is drawn, and a seed of millions never holds all its rows in memory.
_CHUNK = 10_000
# Rebuild the indexes when adding at least a third as many books as the table has. Measured on a
# table of 1M books (2 cores): adding 100k books with every index in place took 12.5 s, and with
# the secondary indexes dropped and built again 22.0 s; adding 300k took 35.6 s and 34.2 s.
_REBUILD_FROM_FRACTION = 3
# Enough to sort the keys of 10M books in memory; a sort takes only what it needs.
_INDEX_BUILD_MEMORY = "1GB"
# The order of each book's values; the other columns keep their defaults (id from the sequence,
# search_vector generated from title and author).
_COPIED_COLUMNS = ("title", "author", "publish_date", "isbn", "price", "stock", "created_at", "updated_at")
_BookRow = tuple[str, str, date, str, Decimal, int, datetime, datetime]

# Other writers wait until the seed commits (so no ISBN is taken meanwhile), and so do readers
# when the indexes are rebuilt (DROP INDEX locks the table until then).
_LOCK_TABLE = "LOCK TABLE book IN SHARE ROW EXCLUSIVE MODE"
_TABLE_STATE = "SELECT count(*), max(created_at), now() FROM book"
_TAKEN_ISBNS = "SELECT isbn FROM book JOIN unnest($1::varchar[]) AS candidate(isbn) USING (isbn)"
# The indexes no constraint relies on: a primary key, unique or exclusion constraint, or a
# foreign key that references the table.
_SECONDARY_INDEXES = """
    SELECT format('%I.%I', schemaname, indexname), indexdef
    FROM pg_indexes
    WHERE format('%I.%I', schemaname, tablename)::regclass = 'book'::regclass
      AND NOT EXISTS (
        SELECT FROM pg_constraint WHERE conindid = format('%I.%I', schemaname, indexname)::regclass
      )
"""
# Statistics for the planner, and the visibility map set for index-only scans.
_VACUUM = "VACUUM (ANALYZE) book"


async def seed_books(count: int, random_seed: int | None = None, stock: int = 0) -> int:
    """Add ``count`` (at least one) books, ``stock`` copies of each, in one transaction; returns how
    many were added.

    The same ``random_seed`` gives the same books on the same catalogue (on an empty table: the
    same titles, authors, ISBNs, prices and publication dates, in the same order).
    """
    rng = random.Random(random_seed)
    isbns = _random_isbns(rng, count)
    connection = await get_engine().get_new_connection()
    try:
        async with connection.transaction():
            await connection.execute(_LOCK_TABLE)
            existing, newest, now = await connection.fetchrow(_TABLE_STATE)
            if existing:
                isbns = await _replace_taken_isbns(connection, rng, isbns)
            books = _books(rng, isbns, stock, _creation_interval(count, newest, now), now)
            if count * _REBUILD_FROM_FRACTION >= existing:
                await _copy_with_indexes_rebuilt(connection, books)
            else:
                await connection.copy_records_to_table("book", records=books, columns=_COPIED_COLUMNS)
        await connection.execute(_VACUUM)
    finally:
        await connection.close()
    return count


def _isbn13(stem: int) -> str:
    """The ISBN-13 of a twelve-digit stem."""
    groups = _GROUP_CHECK_DIGITS
    check_digit = (groups[stem // 100_000_000] + groups[stem // 10_000 % 10_000] + groups[stem % 10_000]) % 10
    return f"{stem}{check_digit}"


def _random_isbns(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct random ISBN-13s."""
    return [_isbn13(stem) for stem in rng.sample(_ISBN_STEMS, count)]


async def _replace_taken_isbns(connection: asyncpg.Connection, rng: random.Random, isbns: list[str]) -> list[str]:
    """``isbns`` with each one a book already has replaced by a new random one that none has."""
    # A dict: a set that keeps the order of the draw, so that a seed stays reproducible.
    untaken = dict.fromkeys(isbns)
    candidates = isbns
    while True:
        for record in await connection.fetch(_TAKEN_ISBNS, candidates):
            del untaken[record["isbn"]]
        if len(untaken) == len(isbns):
            return list(untaken)
        candidates = [isbn for isbn in _random_isbns(rng, len(isbns) - len(untaken)) if isbn not in untaken]
        untaken.update(dict.fromkeys(candidates))


def _creation_interval(count: int, newest: datetime | None, now: datetime) -> timedelta:
    """The time between ``count`` books created up to ``now``: a millisecond, less where needed
    to stay after ``newest`` (the latest book's creation), but never less than a microsecond."""
    if newest is None:
        return _CREATION_INTERVAL
    return max(min(_CREATION_INTERVAL, (now - newest) // count), _SMALLEST_INTERVAL)


def _books(
    rng: random.Random, isbns: list[str], stock: int, interval: timedelta, last_created_at: datetime
) -> Iterator[_BookRow]:
    """A book for each ISBN with ``stock`` copies, its values in ``_COPIED_COLUMNS`` order, created
    ``interval`` after the one before and the last at ``last_created_at``; drawn ``_CHUNK`` books at
    a time."""
    today = date.today()
    publish_dates = [today - timedelta(days=days) for days in range(_PUBLISHED_WITHIN_DAYS)]
    first_created_at = last_created_at - interval * (len(isbns) - 1)
    for start in range(0, len(isbns), _CHUNK):
        chunk = isbns[start : start + _CHUNK]
        size = len(chunk)
        titles = rng.choices(_TITLES, k=size)
        authors = rng.choices(_AUTHORS, k=size)
        published = rng.choices(publish_dates, k=size)
        prices = rng.choices(_PRICES, k=size)
        for index, values in enumerate(zip(titles, authors, published, chunk, prices, strict=True), start):
            created_at = first_created_at + interval * index
            yield (*values, stock, created_at, created_at)


async def _copy_with_indexes_rebuilt(connection: asyncpg.Connection, books: Iterable[_BookRow]) -> None:
    """COPY ``books`` with the secondary indexes dropped, then create them from their definitions.

    Measured with 1M books into an empty table: the COPY took 71 s with every index in place, and
    20-27 s without the secondary ones, which then took 11-14 s to build (0.4-2.5 s each).
    """
    await connection.execute(f"SET LOCAL maintenance_work_mem = '{_INDEX_BUILD_MEMORY}'")
    indexes = await connection.fetch(_SECONDARY_INDEXES)
    for name, _ in indexes:
        await connection.execute(f"DROP INDEX {name}")
    await connection.copy_records_to_table("book", records=books, columns=_COPIED_COLUMNS)
    for _, definition in indexes:
        await connection.execute(definition)
