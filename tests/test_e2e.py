"""End to end: the real ``bookstore serve`` command, its own embedded PostgreSQL, real HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import httpx

from bookstore.testing import BookstoreServer, clean_environment, free_port
from tests.helpers import PASSWORD, TEST_SERVER_ENV, bearer, book_payload, first_answer

EXIT_TIMEOUT_SECONDS = 30.0
# While Granian serves, litestar-granian's signal forwarder owns SIGTERM: the workers stop
# gracefully, `serve` returns and exits 0 (observed). Before or after that window cli.py's own
# handler turns SIGTERM into sys.exit(128 + SIGTERM). Either way the embedded database is stopped.
CLEAN_EXIT_CODES = {0, 128 + signal.SIGTERM}
_TCP_LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the sockets listening on ``port``."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == _TCP_LISTEN and int(hex_port, 16) == port:
                addresses.add(address)
    return addresses


def stop(server: BookstoreServer, postmaster_pid: Path) -> None:
    """Leave nothing running: the server, then (if it was killed) its embedded PostgreSQL."""
    server.stop()
    if postmaster_pid.exists():
        lines = postmaster_pid.read_text().splitlines()
        if lines and lines[0].strip().isdigit():
            # SIGQUIT: PostgreSQL's immediate shutdown of an orphaned postmaster.
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(lines[0]), signal.SIGQUIT)


def test_serve_with_embedded_postgres_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    postmaster_pid = data_dir / "postgres" / "postmaster.pid"
    env = clean_environment()
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "BOOKSTORE_DATA_DIR": str(data_dir),
            **TEST_SERVER_ENV,
            "PYTHONUNBUFFERED": "1",
        }
    )
    out_path, err_path = tmp_path / "stdout.log", tmp_path / "stderr.log"
    admin_port = free_port()
    server = BookstoreServer(
        env, out_path, stderr_log=err_path, stop_timeout=EXIT_TIMEOUT_SECONDS, admin_port=admin_port
    )
    base_url = server.base_url
    try:
        server.start()
        assert postmaster_pid.exists(), "the embedded PostgreSQL should run under BOOKSTORE_DATA_DIR"
        if Path("/proc/net/tcp").exists():
            # 0100007F is 127.0.0.1 in /proc/net/tcp's little-endian hex: loopback only.
            assert listening_addresses(server.port) == {"0100007F"}

        with httpx.Client(base_url=base_url, timeout=10.0) as http:
            email = "e2e-reader@example.com"
            registered = http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
            assert registered.status_code == 201, registered.text
            assert registered.json()["email"] == email
            assert "password" not in registered.text

            login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert login.status_code == 200, login.text
            tokens = login.json()
            assert tokens["token_type"] == "bearer"

            payload = book_payload(title="The Left Hand of Darkness", price="9.99")
            created = http.post("/api/v1/books", json=payload, headers=bearer(tokens["access_token"]))
            assert created.status_code == 201, created.text
            book = created.json()
            assert created.headers["location"] == f"/api/v1/books/{book['id']}"
            assert created.headers["etag"]

            fetched = http.get(f"/api/v1/books/{book['id']}")
            assert fetched.status_code == 200, fetched.text
            assert fetched.headers["etag"] == created.headers["etag"]
            body = fetched.json()
            assert body == book
            assert body["title"] == payload["title"]
            assert body["author"] == payload["author"]
            assert body["publish_date"] == payload["publish_date"]
            assert body["isbn"] == payload["isbn"]
            assert body["price"] == "9.99"
            assert body["created_by"] == registered.json()["id"]

            not_modified = http.get(f"/api/v1/books/{book['id']}", headers={"If-None-Match": fetched.headers["etag"]})
            assert not_modified.status_code == 304

            docs = http.get("/docs/openapi.json")
            assert docs.status_code == 200
            assert docs.headers["content-type"].startswith("application/")
            assert "json" in docs.headers["content-type"]
            assert docs.json()["openapi"].startswith("3.1")

        # The admin panel, started beside the API on the same embedded database, knows its users.
        admin_url = f"http://127.0.0.1:{admin_port}/admin/"
        admin_page = first_answer(admin_url)
        assert admin_page.status_code == 200
        assert '<div id="app">' in admin_page.text

        returncode = server.stop()  # SIGTERM; SIGKILL (exit code -9) if still running after EXIT_TIMEOUT_SECONDS
        stdout, stderr = out_path.read_text(), err_path.read_text()
        assert returncode in CLEAN_EXIT_CODES, f"exit code {returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        assert not postmaster_pid.exists(), "the embedded PostgreSQL is still running after the server exited"
        assert f"{base_url}/api/v1/books" in stdout
        assert f"{base_url}/docs" in stdout
        assert f"{base_url}/docs/openapi.json" in stdout
        assert admin_url in stdout
        assert listening_addresses(admin_port) == set(), "the admin panel outlived `bookstore serve`"
        assert "Traceback" not in stderr, stderr
    finally:
        stop(server, postmaster_pid)
