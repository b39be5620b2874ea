"""The migrations describe the tables exactly: ``piccolo migrations new --auto`` finds nothing to do.

Piccolo's auto migrations diff the table classes against the state their earlier migrations
recorded; a table, column or constraint created only by raw SQL is invisible to that state, so
the next ``--auto`` would try to create it a second time.
"""

from __future__ import annotations

from piccolo.apps.migrations.commands.new import AutoMigrationManager

from bookstore.piccolo_app import APP_CONFIG


async def test_auto_migrations_find_no_change_to_make() -> None:
    pending = await AutoMigrationManager().get_alter_statements(app_config=APP_CONFIG)
    statements = [statement for alteration in pending for statement in alteration.statements]
    assert statements == []
