"""Give every book a stock level: copies the shop can sell, never below zero.

Existing books start with none in stock. The CHECK is the last line of defence against
overselling: orders decrement stock with conditional statements, and a bug that slipped past
them would make the transaction fail here rather than sell copies that do not exist.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

ID = "2026-11-30T06:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Stock level of each book, never negative"

FORWARDS_SQL = (
    "ALTER TABLE book ADD COLUMN stock integer NOT NULL DEFAULT 0 CONSTRAINT book_stock_non_negative CHECK (stock >= 0)",
)

BACKWARDS_SQL = ("ALTER TABLE book DROP COLUMN stock",)


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
