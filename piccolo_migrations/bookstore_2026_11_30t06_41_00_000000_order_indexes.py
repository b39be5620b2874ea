"""Index a user's orders by id: ``GET /api/v1/orders`` pages through them newest first.

Written by hand: the ORM declares single-column indexes only. The index also serves the
``ON DELETE SET NULL`` of ``book_order.user_id`` when an account is deleted.
"""

from bookstore.core.migrations import raw_sql_migration

ID = "2026-11-30T06:41:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Index of each user's orders by id"

FORWARDS_SQL = ("CREATE INDEX book_order_user_id_id_idx ON book_order (user_id, id)",)

BACKWARDS_SQL = ("DROP INDEX book_order_user_id_id_idx",)

forwards = raw_sql_migration(ID, DESCRIPTION, FORWARDS_SQL, BACKWARDS_SQL)
