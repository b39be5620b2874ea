"""Realistic demo books: plausible titles and authors, valid unique ISBN-13s, sane prices."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from bookstore.books.isbn import isbn13_check_digit
from bookstore.books.tables import BookTable

__all__ = ["generate_books", "seed_books"]

_BATCH = 1000
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


def _isbn13(rng: random.Random, used: set[str]) -> str:
    while True:
        stem = rng.choice(("978", "979")) + f"{rng.randrange(10**9):09d}"
        isbn = stem + isbn13_check_digit(stem)
        if isbn not in used:
            used.add(isbn)
            return isbn


def generate_books(count: int, rng: random.Random, used_isbns: set[str]) -> list[BookTable]:
    """``count`` unsaved books whose ISBNs are not in ``used_isbns`` (which is updated)."""
    today = date.today()
    books = []
    for _ in range(count):
        title = rng.choice(_PATTERNS).format(
            adj=rng.choice(_ADJECTIVES), noun=rng.choice(_NOUNS), noun2=rng.choice(_NOUNS)
        )
        books.append(
            BookTable(
                title=title,
                author=f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
                publish_date=today - timedelta(days=rng.randrange(60 * 365)),
                isbn=_isbn13(rng, used_isbns),
                price=Decimal(rng.randrange(199, 8999)) / 100,
                created_by=None,
            )
        )
    return books


async def seed_books(count: int, random_seed: int | None = None) -> int:
    """Insert ``count`` books in batches; returns how many were added."""
    rng = random.Random(random_seed)
    existing = await BookTable.select(BookTable.isbn).output(as_list=True)
    used = set(existing)
    for start in range(0, count, _BATCH):
        await BookTable.insert(*generate_books(min(_BATCH, count - start), rng, used))
    return count
