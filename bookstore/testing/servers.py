"""Real servers on loopback for tests and benchmarks: ``bookstore serve``, ``bookstore admin``,
redis-server, and any other HTTP server command.

Each runs in a session of its own (the terminal's Ctrl-C reaches only the caller, which stops it),
writes its output to a log file, is ready when it answers, and is stopped with SIGTERM, then
SIGKILL for whatever is left of the processes it started. A missing program raises
:class:`ToolMissingError`; a server that exits early or is not ready in time raises
:class:`ServerError`, with the end of its log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx
import redis

from bookstore.testing.processes import process_group, process_tree, start_time

__all__ = [
    "LOOPBACK",
    "AdminServer",
    "BookstoreServer",
    "HttpServer",
    "RedisServer",
    "Server",
    "ServerError",
    "ServerProcess",
    "ToolMissingError",
    "clean_environment",
    "free_port",
    "redis_server_binary",
]

LOOPBACK = "127.0.0.1"
_POLL_SECONDS = 0.2


class ServerError(RuntimeError):
    """A server exited early or was not ready in time; the message ends with its log."""


class ToolMissingError(ServerError):
    """A program a server needs is not installed; the message says how to install it."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environment(keep: Collection[str] = ()) -> dict[str, str]:
    """This process's environment without its ``BOOKSTORE_*`` settings (but those in ``keep``),
    for a server whose settings the caller chooses."""
    return {key: value for key, value in os.environ.items() if not key.startswith("BOOKSTORE_") or key in keep}


def redis_server_binary() -> str:
    """Path of ``redis-server``, or :class:`ToolMissingError`."""
    path = shutil.which("redis-server")
    if path is None:
        raise ToolMissingError("redis-server is not installed (Debian: apt-get install redis-server)")
    return path


class Server(ABC):
    """Something that serves between :meth:`start` and :meth:`stop`; as a context manager, from
    entry to exit."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> object: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


class ServerProcess(Server):
    """A server command, started by :meth:`start` (again after :meth:`stop`, if need be)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log: Path,
        stderr_log: Path | None = None,
        cwd: Path | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log = log
        self.stderr_log = stderr_log  # None: stderr goes to ``log`` too
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> None:
        """Start the command and wait until it is ready; stop it again if it is not."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as files:
            stdout = files.enter_context(self.log.open("wb"))
            stderr: IO[bytes] | int = subprocess.STDOUT
            if self.stderr_log is not None:
                stderr = files.enter_context(self.stderr_log.open("wb"))
            self.process = subprocess.Popen(  # noqa: S603 - the caller's own command, no shell
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.returncode = None
        try:
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def wait_until_ready(self) -> None:
        """Return once the server serves; here, only check that it has not exited."""
        self.check_alive()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        """Raise :class:`ServerError` with the end of the log if the server has exited."""
        if not self.alive():
            code = self.process.returncode if self.process is not None else self.returncode
            raise ServerError(f"{self.name} exited with {code}:\n{self.log_tail()}")

    def output(self) -> str:
        """All the server has written so far (its stdout, then its stderr if kept apart)."""
        logs = [self.log] if self.stderr_log is None else [self.log, self.stderr_log]
        texts = []
        for log in logs:
            with contextlib.suppress(OSError):
                texts.append(log.read_text(errors="replace"))
        return "\n".join(texts)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM and up to ``stop_timeout`` s of grace, then SIGKILL for whatever is left of its
        processes. Returns its exit code (negative: the signal that ended it); None if never started.
        """
        process = self.process
        if process is None:
            return self.returncode
        # Its descendants (Granian runs in a session of its own) and its process group, with their
        # start times, so that a recycled pid is never mistaken for one of them.
        started = {pid: start_time(pid) for pid in {*process_tree(process.pid), *process_group(process.pid)}}
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.stop_timeout)
        for pid, start in started.items():
            if pid != process.pid and start is not None and start_time(pid) == start:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        self.process, self.returncode = None, process.returncode
        return self.returncode


class HttpServer(ServerProcess):
    """An HTTP server command on a loopback ``port``, ready when ``ready_path`` answers 200."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str],
        log: Path,
        ready_path: str = "/health",
        ready_timeout: float = 60.0,
        stderr_log: Path | None = None,
        cwd: Path | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        super().__init__(name, argv, env=env, log=log, stderr_log=stderr_log, cwd=cwd, stop_timeout=stop_timeout)
        self.port = port
        self.base_url = f"http://{LOOPBACK}:{port}"
        self.ready_path = ready_path
        self.ready_timeout = ready_timeout

    def wait_until_ready(self, path: str | None = None) -> None:
        """Poll ``path`` (default: the ready path) every 0.2 s until it answers 200."""
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.base_url + (path or self.ready_path), timeout=2.0).status_code == 200:
                    return
            time.sleep(_POLL_SECONDS)
        raise ServerError(f"{self.name} was not ready within {self.ready_timeout:.0f} s:\n{self.log_tail()}")


class BookstoreServer(HttpServer):
    """``python -m bookstore serve`` on a loopback port (a free one unless given), with exactly the
    environment ``env``, with the admin panel on ``admin_port`` (none if 0); ready when
    ``/health/ready`` answers 200."""

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        *,
        workers: int = 1,
        port: int | None = None,
        stderr_log: Path | None = None,
        cwd: Path | None = None,
        ready_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        admin_port: int = 0,
    ) -> None:
        port = port or free_port()
        argv = [sys.executable, "-m", "bookstore", "serve", "--host", LOOPBACK, "--port", str(port)]
        super().__init__(
            "bookstore serve",
            [*argv, "--workers", str(workers), "--admin-port", str(admin_port)],
            port=port,
            env=env,
            log=log,
            ready_path="/health/ready",
            ready_timeout=ready_timeout,
            stderr_log=stderr_log,
            cwd=cwd,
            stop_timeout=stop_timeout,
        )


class AdminServer(HttpServer):
    """``python -m bookstore admin`` on a loopback port (a free one unless given), with exactly the
    environment ``env``; ready when ``/admin/`` answers 200 (not the login page, which Piccolo's
    login limiter counts)."""

    def __init__(
        self, env: Mapping[str, str], log: Path, *, port: int | None = None, ready_timeout: float = 60.0
    ) -> None:
        port = port or free_port()
        super().__init__(
            "bookstore admin",
            [sys.executable, "-m", "bookstore", "admin", "--host", LOOPBACK, "--port", str(port)],
            port=port,
            env=env,
            log=log,
            ready_path="/admin/",
            ready_timeout=ready_timeout,
        )


class RedisServer(ServerProcess):
    """A private, memory-only redis-server on a free loopback port, its files in ``directory``;
    it keeps its port when stopped and started again."""

    def __init__(self, directory: Path, *, binary: str | None = None, ready_timeout: float = 10.0) -> None:
        self.port = free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self.ready_timeout = ready_timeout
        argv = [binary or redis_server_binary(), "--port", str(self.port), "--bind", LOOPBACK]
        no_persistence = ["--save", "", "--appendonly", "no", "--dir", str(directory)]
        super().__init__("redis-server", [*argv, *no_persistence], env=os.environ, log=directory / "redis.log")

    def wait_until_ready(self) -> None:
        """Ping every 0.05 s until the server answers."""
        deadline = time.monotonic() + self.ready_timeout
        with contextlib.closing(self.client(socket_timeout=0.5)) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                self.check_alive()
                time.sleep(0.05)
        raise ServerError(f"{self.name} did not start within {self.ready_timeout:.0f} s:\n{self.log_tail()}")

    def client(self, socket_timeout: float = 1.0) -> redis.Redis:
        """A new synchronous client of this server (the caller closes it)."""
        return redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=socket_timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def flush(self) -> None:
        """Delete every key."""
        with contextlib.closing(self.client()) as client:
            client.flushall()
