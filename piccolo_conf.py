"""Piccolo's configuration: the engine and the apps whose tables and migrations it manages.

The database URL comes from ``DATABASE_URL``; ``bookstore serve`` and the test suite set it to
their embedded PostgreSQL before anything imports this module.
"""

import os
from typing import Any

from piccolo.engine.postgres import PostgresEngine

DB = PostgresEngine(config={"dsn": os.environ.get("DATABASE_URL", "")})

# The apps: ours, and piccolo_api's session table, where the admin panel keeps its logins.
_APPS = ["bookstore.piccolo_app", "piccolo_api.session_auth.piccolo_app"]


def __getattr__(name: str) -> Any:
    # APP_REGISTRY is built on first use (migrations, the piccolo CLI): its module imports black,
    # which the API's workers, reading only DB, need not load.
    if name == "APP_REGISTRY":
        from piccolo.conf.apps import AppRegistry

        return AppRegistry(apps=_APPS)
    raise AttributeError(name)
