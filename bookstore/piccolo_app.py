"""The Piccolo app of the bookstore: its tables and the folder of its migrations."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from bookstore.accounts.tables import RefreshTokenTable, SessionTable, UserTable
from bookstore.books.tables import BookTable
from bookstore.orders.tables import IdempotencyKeyTable, OrderItemTable, OrderTable

APP_CONFIG = AppConfig(
    app_name="bookstore",
    migrations_folder_path=Path(__file__).resolve().parent.parent / "piccolo_migrations",
    table_classes=[
        UserTable,
        SessionTable,
        RefreshTokenTable,
        BookTable,
        OrderTable,
        OrderItemTable,
        IdempotencyKeyTable,
    ],
    migration_dependencies=[],
    commands=[],
)
