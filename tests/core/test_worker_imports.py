"""What an API worker loads: nothing of the admin panel, nor what only migrations need.

Each module named here costs every worker memory it never uses (black 7.5 MiB; FastAPI, pydantic's
models, Jinja and piccolo_admin 12.5 MiB), against a budget of 120 MiB per worker.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bookstore.testing import clean_environment
from tests.helpers import TEST_SERVER_ENV

# What a Granian worker runs: the app factory, then the pool's engine, then a query's table.
_WORKER = """
import json, sys
from bookstore.app import create_app
from bookstore.books.tables import BookTable
from bookstore.core.database import get_engine
from bookstore.settings import load_settings
create_app(load_settings())
engine = get_engine()
assert BookTable._meta.db is engine
print(json.dumps(sorted(sys.modules)))
"""
NOT_IN_A_WORKER = ("black", "piccolo.conf.apps", "piccolo_admin", "piccolo_api", "fastapi", "jinja2")


def test_an_api_worker_loads_neither_the_admin_nor_the_migration_tools() -> None:
    # Building the app and the engine opens no connection: any database URL will do.
    env = {
        **clean_environment(),
        **TEST_SERVER_ENV,
        "DATABASE_URL": "postgresql://127.0.0.1:1/unused",
        "BOOKSTORE_SECRET_KEY": "k" * 40,
    }
    result = subprocess.run(
        [sys.executable, "-c", _WORKER], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(result.stdout.splitlines()[-1]))
    assert "bookstore.app" in modules
    unwanted = {
        name for name in modules for prefix in NOT_IN_A_WORKER if name == prefix or name.startswith(f"{prefix}.")
    }
    assert unwanted == set()
