"""Add the checks and indexes the ORM cannot declare.

Every filter and sort of ``GET /api/v1/books`` has an index here. Sort indexes end in ``id``
because pages are ordered by (column, id), which keeps offset pagination stable.
"""

from bookstore.core.migrations import raw_sql_migration

ID = "2026-11-21T05:57:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Book constraints and the indexes behind every filter and sort"

FORWARDS_SQL = (
    "ALTER TABLE book ADD CONSTRAINT book_price_non_negative CHECK (price >= 0)",
    "ALTER TABLE book ADD CONSTRAINT book_version_positive CHECK (version >= 1)",
    "ALTER TABLE book ADD CONSTRAINT book_isbn_13 CHECK (isbn ~ '^97[89][0-9]{{10}}$')",  # {{}}: Piccolo formats raw SQL
    "CREATE INDEX book_title_id_idx ON book (title, id)",
    "CREATE INDEX book_author_id_idx ON book (author, id)",
    "CREATE INDEX book_author_lower_idx ON book (lower(author))",
    "CREATE INDEX book_publish_date_id_idx ON book (publish_date, id)",
    "CREATE INDEX book_price_id_idx ON book (price, id)",
    "CREATE INDEX book_created_at_id_idx ON book (created_at, id)",
    "CREATE INDEX book_search_idx ON book USING gin (to_tsvector('simple', title || ' ' || author))",
    "CREATE INDEX book_created_by_idx ON book (created_by)",
    "CREATE INDEX refresh_token_expires_at_idx ON refresh_token (expires_at)",
)

BACKWARDS_SQL = (
    "DROP INDEX refresh_token_expires_at_idx",
    "DROP INDEX book_created_by_idx",
    "DROP INDEX book_search_idx",
    "DROP INDEX book_created_at_id_idx",
    "DROP INDEX book_price_id_idx",
    "DROP INDEX book_publish_date_id_idx",
    "DROP INDEX book_author_lower_idx",
    "DROP INDEX book_author_id_idx",
    "DROP INDEX book_title_id_idx",
    "ALTER TABLE book DROP CONSTRAINT book_isbn_13",
    "ALTER TABLE book DROP CONSTRAINT book_version_positive",
    "ALTER TABLE book DROP CONSTRAINT book_price_non_negative",
)

forwards = raw_sql_migration(ID, DESCRIPTION, FORWARDS_SQL, BACKWARDS_SQL)
