"""The ``bookstore`` command's administrative subcommands, run as a user would run them."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bookstore.accounts.tables import UserTable
from bookstore.app import render_openapi_document
from bookstore.books.isbn import normalise_isbn
from bookstore.books.tables import BookTable
from bookstore.testing import fetch_rows, free_port
from tests.helpers import PASSWORD, TEST_SERVER_ENV, ApiClient


def bookstore(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BOOKSTORE_DATA_DIR": str(data_dir),
        **TEST_SERVER_ENV,
    }
    return subprocess.run(
        [sys.executable, "-m", "bookstore", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_createsuperuser_creates_an_admin_who_can_log_in(
    client: ApiClient, tmp_path: Path, database_url: str
) -> None:
    result = bookstore("createsuperuser", "--email", " Boss@Example.com", "--password", PASSWORD, data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "boss@example.com" in result.stdout
    tokens = await client.login("boss@example.com")
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["is_admin"] is True
    # A superuser as well: the admin panel lets only superusers manage accounts.
    [row] = fetch_rows(database_url, "SELECT admin, superuser FROM app_user WHERE email = $1", "boss@example.com")
    assert (row["admin"], row["superuser"]) == (True, True)


async def test_createsuperuser_refuses_a_taken_email(client: ApiClient, tmp_path: Path) -> None:
    await client.register("taken@example.com")
    result = bookstore("createsuperuser", "--email", "TAKEN@example.com", "--password", PASSWORD, data_dir=tmp_path)
    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert await UserTable.count().where(UserTable.admin == True) == 0  # noqa: E712 - SQL comparison


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [("not-an-email", PASSWORD, "email:"), ("ok@example.com", "short", "password:")],
)
async def test_createsuperuser_rejects_invalid_input(
    client: ApiClient, tmp_path: Path, email: str, password: str, message: str
) -> None:
    result = bookstore("createsuperuser", "--email", email, "--password", password, data_dir=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert await UserTable.count() == 0


async def test_seed_adds_books_with_valid_unique_isbns(client: ApiClient, tmp_path: Path) -> None:
    result = bookstore("seed", "--books", "120", "--seed", "7", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^Added 120 books in \d+\.\d s\.$", result.stdout, re.MULTILINE), result.stdout
    isbns = await BookTable.select(BookTable.isbn).output(as_list=True)
    assert len(isbns) == 120
    assert len(set(isbns)) == 120
    assert all(normalise_isbn(isbn) == isbn for isbn in isbns)


def test_openapi_writes_the_generated_document(tmp_path: Path) -> None:
    target = tmp_path / "openapi.json"
    result = bookstore("openapi", "--output", str(target), data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert target.read_text() == render_openapi_document()


def test_invalid_configuration_stops_with_the_variable_named(tmp_path: Path) -> None:
    env_result = subprocess.run(
        [sys.executable, "-m", "bookstore", "migrate"],
        env={**os.environ, "BOOKSTORE_DATA_DIR": str(tmp_path), "BOOKSTORE_DB_POOL_MAX_SIZE": "lots"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert env_result.returncode == 1
    assert "BOOKSTORE_DB_POOL_MAX_SIZE" in env_result.stderr


def test_serve_rejects_a_shutdown_timeout_granian_cannot_take_naming_the_setting(tmp_path: Path) -> None:
    result = bookstore("serve", "--shutdown-timeout", "0", data_dir=tmp_path)
    assert result.returncode == 1
    assert "BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS" in result.stderr
    # Refused before anything started: no embedded database was created.
    assert not (tmp_path / "postgres").exists()


@pytest.mark.parametrize("option", ["--port", "--admin-port"])
def test_serve_refuses_a_port_another_server_listens_on(tmp_path: Path, option: str) -> None:
    # Granian would share it (SO_REUSEPORT) and the kernel split the requests between the two.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        ports = {"--port": free_port(), "--admin-port": free_port(), option: taken}
        result = bookstore("serve", *(str(item) for pair in ports.items() for item in pair), data_dir=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"cannot listen on 127.0.0.1:{taken}" in result.stderr
    assert f"Choose another {option}." in result.stderr
    # Refused before anything started: no embedded database was created.
    assert not (tmp_path / "postgres").exists()


def test_serve_refuses_the_same_port_for_the_api_and_the_admin(tmp_path: Path) -> None:
    result = bookstore("serve", "--port", "18765", "--admin-port", "18765", data_dir=tmp_path)
    assert result.returncode == 2
    assert "--admin-port" in result.stderr
    assert "must differ from --port" in result.stderr
