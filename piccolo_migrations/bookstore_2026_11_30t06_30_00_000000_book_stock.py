"""Give every book a stock level that can never go negative (generated with --auto).

Existing books start with none in stock. The CHECK is the backstop behind the orders' conditional
decrements: a bug that slipped past them would make the transaction fail rather than sell copies
that do not exist.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Integer
from piccolo.columns.indexes import IndexMethod
from piccolo.constraints import Check

ID = "2026-11-30T06:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Stock level of each book, never negative"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="bookstore", description=DESCRIPTION)

    manager.add_column(
        table_class_name="BookTable",
        tablename="book",
        column_name="stock",
        db_column_name="stock",
        column_class_name="Integer",
        column_class=Integer,
        params={
            "default": 0,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_constraint(
        table_class_name="BookTable",
        tablename="book",
        constraint_name="book_stock_non_negative",
        constraint_class=Check,
        params={"condition": '"stock" >= 0'},
        schema=None,
    )

    return manager
