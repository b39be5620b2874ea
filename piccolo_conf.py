"""Piccolo's configuration: the engine and the apps whose tables and migrations it manages.

The database URL comes from ``DATABASE_URL``; ``bookstore serve`` and the test suite set it to
their embedded PostgreSQL before anything imports this module.
"""

import os

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine

DB = PostgresEngine(config={"dsn": os.environ.get("DATABASE_URL", "")})

APP_REGISTRY = AppRegistry(apps=["bookstore.piccolo_app"])
