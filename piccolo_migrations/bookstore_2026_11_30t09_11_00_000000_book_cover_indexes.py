"""Index the books' cover keys: a stored file may be deleted only when no book references it.

Partial indexes, written by hand (the ORM cannot declare them): most books have no cover, and the
checks only ever look up a key.
"""

from bookstore.core.migrations import raw_sql_migration

ID = "2026-11-30T09:11:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Indexes of the cover keys"

FORWARDS_SQL = (
    "CREATE INDEX book_cover_key_idx ON book (cover_key) WHERE cover_key IS NOT NULL",
    "CREATE INDEX book_cover_thumbnail_key_idx ON book (cover_thumbnail_key) WHERE cover_thumbnail_key IS NOT NULL",
)

BACKWARDS_SQL = ("DROP INDEX book_cover_thumbnail_key_idx", "DROP INDEX book_cover_key_idx")

forwards = raw_sql_migration(ID, DESCRIPTION, FORWARDS_SQL, BACKWARDS_SQL)
