"""Real servers for tests: ``redis-server`` and ``bookstore serve`` processes on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.helpers import LOOPBACK, TEST_SERVER_ENV, free_port, wait_until_ready

__all__ = ["BookstoreProcess", "RedisProcess", "redis_server_binary"]


def redis_server_binary() -> str:
    """Path of ``redis-server``; skips the test without it, except under CI where that fails."""
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required under CI (.ci/run installs it with apt-get)")
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    return path


class RedisProcess:
    """A private, memory-only redis-server on a free loopback port that can be stopped and restarted."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        client = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=0.5)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        client = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=1)
        try:
            client.flushall()
        finally:
            client.close()


class BookstoreProcess:
    """``bookstore serve`` as a subprocess on the test database, stopped with SIGTERM."""

    def __init__(self, directory: Path, *, workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://{LOOPBACK}:{self.port}"
        self.log = directory / f"bookstore-{self.port}.log"
        directory.mkdir(parents=True, exist_ok=True)
        environment = {key: value for key, value in os.environ.items() if not key.startswith("BOOKSTORE_")}
        environment.update(
            {
                **TEST_SERVER_ENV,
                "BOOKSTORE_DATA_DIR": str(directory / "data"),
                "BOOKSTORE_SECRET_KEY": "live-server-secret-" + "s" * 32,
                "BOOKSTORE_DB_POOL_MIN_SIZE": "1",
                "BOOKSTORE_DB_POOL_MAX_SIZE": "4",
                **(env or {}),
            }
        )
        command = [sys.executable, "-m", "bookstore", "serve", "--host", LOOPBACK, "--port", str(self.port)]
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [*command, "--workers", str(workers)],
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            wait_until_ready(self.process, self.base_url, self.output)
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
