"""Migrations written as raw SQL: what the ORM cannot declare (partial and composite indexes,
generated columns, constraints added to existing rows).

Piccolo runs a migration's raw steps before its ``add_table``/``add_column`` steps, so SQL that
needs a new table or column goes into a migration of its own, after the one that adds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.table import Table

__all__ = ["raw_sql_migration"]


class _RawSQL(Table):
    """A handle to run raw SQL through the migration's engine."""


def raw_sql_migration(
    migration_id: str, description: str, forwards_sql: Sequence[str], backwards_sql: Sequence[str]
) -> Callable[[], Awaitable[MigrationManager]]:
    """A migration's ``forwards``: run ``forwards_sql`` in order, and ``backwards_sql`` to undo it."""

    async def forwards() -> MigrationManager:
        manager = MigrationManager(migration_id=migration_id, app_name="bookstore", description=description)

        async def run_forwards() -> None:
            for statement in forwards_sql:
                await _RawSQL.raw(statement)

        async def run_backwards() -> None:
            for statement in backwards_sql:
                await _RawSQL.raw(statement)

        manager.add_raw(run_forwards)
        manager.add_raw_backwards(run_backwards)
        return manager

    return forwards
