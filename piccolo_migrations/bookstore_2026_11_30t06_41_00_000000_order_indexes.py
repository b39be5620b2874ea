"""Index a user's orders by id: ``GET /api/v1/orders`` pages through them newest first.

Written by hand: the ORM declares single-column indexes only. The index also serves the
``ON DELETE SET NULL`` of ``book_order.user_id`` when an account is deleted.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-30T06:41:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Index of each user's orders by id"

FORWARDS_SQL = ("CREATE INDEX book_order_user_id_id_idx ON book_order (user_id, id)",)

BACKWARDS_SQL = ("DROP INDEX book_order_user_id_id_idx",)


class RawTable(Table):
    """A handle to run raw SQL through the migration's engine."""


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="bookstore", description=DESCRIPTION)

    async def run_forwards() -> None:
        for statement in FORWARDS_SQL:
            await RawTable.raw(statement)

    async def run_backwards() -> None:
        for statement in BACKWARDS_SQL:
            await RawTable.raw(statement)

    manager.add_raw(run_forwards)
    manager.add_raw_backwards(run_backwards)
    return manager
