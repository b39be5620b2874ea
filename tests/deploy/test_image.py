"""The container image, as far as it can be checked without a container engine (none exists here).

The Containerfile is parsed, and its final stage's ENTRYPOINT + CMD run as a process on this
machine with exactly the image's ENV, against the tests' PostgreSQL and Redis: the project's
virtual environment stands in for /app/.venv, and an empty directory for the working directory.
What this does not cover is the build itself (the base image, `uv sync` in the builder, the
copies between stages); `hadolint` checks the file statically in .ci/run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import httpx
import pytest

from bookstore.cli import main as bookstore_command
from bookstore.piccolo_app import APP_CONFIG
from bookstore.testing import LOOPBACK, HttpServer, ServerError, ServerProcess, fetch_rows, free_port
from bookstore.testing.processes import cmdline, process_tree
from tests.helpers import PASSWORD
from tests.servers import RedisProcess

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"
IGNORE_FILES = (ROOT / ".containerignore", ROOT / ".dockerignore")
# The stop grace period the Containerfile asks compose and Kubernetes for: Granian kills a worker
# still busy BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS (20 s) after SIGTERM, then exits.
GRACE_PERIOD_SECONDS = 30.0
# What the base image (python:3.11-slim-bookworm) puts in the environment, and the HOME of the
# image's user (`useradd --home-dir /nonexistent`): nothing may need to write there.
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/nonexistent",
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


# --- reading the Containerfile --------------------------------------------------------------------


@dataclass
class Stage:
    """One build stage: its instructions, in order, as (INSTRUCTION, arguments)."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, instruction: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == instruction]

    def last(self, instruction: str) -> str:
        found = self.arguments(instruction)
        assert found, f"the stage from {self.base} has no {instruction}"
        return found[-1]

    def exec_form(self, instruction: str) -> list[str]:
        """An ENTRYPOINT or CMD, which must be a JSON array: in the shell form, `sh -c` would be
        process 1 and the stop signal would never reach the server."""
        return _json_array(self.last(instruction))

    @property
    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for arguments in self.arguments("ENV"):
            for pair in shlex.split(arguments):
                key, equals, value = pair.partition("=")
                assert equals, f"ENV {arguments!r}: use the KEY=value form"
                values[key] = value
        return values

    def copies(self) -> list[tuple[list[str], str, str | None]]:
        """COPY instructions as (sources, destination, the --from stage or None for the context)."""
        result = []
        for arguments in self.arguments("COPY"):
            words = arguments.split()
            options = {word.partition("=")[0]: word.partition("=")[2] for word in words if word.startswith("--")}
            paths = [word for word in words if not word.startswith("--")]
            result.append((paths[:-1], paths[-1], options.get("--from")))
        return result


def read_stages(path: Path = CONTAINERFILE) -> list[Stage]:
    """The file's stages, continuation lines joined and comments dropped."""
    stages: list[Stage] = []
    logical = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        logical += line.rstrip()
        if logical.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        instruction, _, arguments = logical.strip().partition(" ")
        logical = ""
        if instruction.upper() == "FROM":
            words = arguments.split()
            stages.append(Stage(base=words[0], name=words[2] if len(words) == 3 else None))
        else:
            stages[-1].instructions.append((instruction.upper(), " ".join(arguments.split())))
    return stages


def _json_array(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    assert isinstance(value, list), f"{text!r} is not in the exec (JSON array) form"
    assert all(isinstance(item, str) for item in value), text
    return value


def _seconds(duration: str) -> float:
    match = _DURATION.match(duration)
    assert match, f"{duration!r}: expected a duration such as 5s"
    return float(match.group(1))


@dataclass(frozen=True)
class Image:
    """What the final stage runs, and how."""

    command: list[str]  # ENTRYPOINT + CMD
    env: dict[str, str]
    workdir: str
    user: str
    ports: tuple[int, ...]  # every EXPOSE'd port
    stop_signal: signal.Signals
    healthcheck: list[str]
    healthcheck_timeout: float
    copies: list[tuple[list[str], str, str | None]]

    @property
    def port(self) -> int:
        """The port the image's command listens on."""
        return int(option(self.command, "--port"))


def option(command: list[str], name: str) -> str:
    """The value after ``name`` in an exec-form command."""
    return command[command.index(name) + 1]


def read_image(path: Path = CONTAINERFILE) -> Image:
    final = read_stages(path)[-1]
    options, _, healthcheck = final.last("HEALTHCHECK").partition(" CMD ")
    healthcheck_options = dict(option.removeprefix("--").split("=", 1) for option in options.split())
    return Image(
        command=final.exec_form("ENTRYPOINT") + final.exec_form("CMD"),
        env=final.env,
        workdir=final.last("WORKDIR"),
        user=final.last("USER"),
        ports=tuple(int(port) for arguments in final.arguments("EXPOSE") for port in arguments.split()),
        stop_signal=signal.Signals[final.last("STOPSIGNAL")],
        healthcheck=_json_array(healthcheck),
        healthcheck_timeout=_seconds(healthcheck_options["timeout"]),
        copies=final.copies(),
    )


# --- running it here ------------------------------------------------------------------------------


def local_environment(image: Image, **extra: str) -> dict[str, str]:
    """The image's environment on this machine: nothing of this process's own (no DATABASE_URL
    of the test session, no BOOKSTORE_*), the project's venv in place of the image's, plus ``extra``."""
    image_venv = f"{image.workdir}/.venv"
    env = dict(BASE_IMAGE_ENV)
    for key, value in image.env.items():
        # As the build does: `$PATH` in an ENV value is the value the variable has so far.
        env[key] = Template(value).substitute(env).replace(image_venv, sys.prefix)
    return {**env, **extra}


def local_command(argv: list[str], env: dict[str, str], *, image_port: int, port: int) -> list[str]:
    """``argv`` with its program resolved on ``env``'s PATH (so from the project's venv), and two
    replacements, both so the test can run next to others on a shared machine: the image's port
    by ``port`` (a free one) and the address 0.0.0.0 (every interface, needed inside a container)
    by loopback."""
    program = shutil.which(argv[0], path=env["PATH"])
    assert program, f"{argv[0]} is not on the image's PATH"
    assert Path(program).parent == Path(sys.prefix) / "bin", program
    replaced = [program]
    for previous, word in itertools.pairwise(argv):
        if previous == "--port":
            assert word == str(image_port), f"the command listens on {word}, the image exposes {image_port}"
            word = str(port)
        elif previous == "--host":
            # Inside a container only "every interface" is reachable through the published port.
            assert word == "0.0.0.0", f"the command listens on {word} only"  # noqa: S104 - checks the image binds every interface; binds nothing
            word = LOOPBACK
        replaced.append(word)
    return replaced


def healthcheck_command(image: Image, env: dict[str, str], port: int) -> list[str]:
    """The HEALTHCHECK's command line, its program from the venv and its URL on ``port``."""
    return local_healthcheck(image.healthcheck, env, container_port=image.port, port=port)


def local_healthcheck(argv: list[str], env: dict[str, str], *, container_port: int, port: int) -> list[str]:
    """A health check's command line (a program, then Python code that asks a URL), with its program
    from ``env``'s PATH and the URL it asks inside the container moved to loopback ``port``."""
    container_url = f"http://127.0.0.1:{container_port}/"
    code = argv[-1]
    assert container_url in code, f"the health check does not ask {container_url}"
    program = shutil.which(argv[0], path=env["PATH"])
    assert program, argv[0]
    return [program, *argv[1:-1], code.replace(container_url, f"http://{LOOPBACK}:{port}/")]


def start_image_server(directory: Path, database_url: str, redis_url: str) -> HttpServer:
    """The image's command on a free loopback port, with the image's environment plus the three
    variables a deployment provides; started, and answering /health (not yet /health/ready)."""
    image = read_image()
    workdir = directory / "workdir"
    workdir.mkdir()
    env = local_environment(
        image,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        BOOKSTORE_SECRET_KEY=secrets.token_hex(32),
    )
    port = free_port()
    server = HttpServer(
        "bookstore (image command)",
        local_command(image.command, env, image_port=image.port, port=port),
        port=port,
        env=env,
        log=directory / "stdout.log",
        stderr_log=directory / "stderr.log",
        cwd=workdir,
        ready_path="/health",
        stop_timeout=GRACE_PERIOD_SECONDS,
    )
    try:
        server.start()
    except ServerError as error:
        pytest.fail(str(error))
    return server


def stop_embedded_postgres(data_dir: Path) -> None:
    """Stop an embedded PostgreSQL the command should never have started (pg_ctl daemonises it,
    so it would outlive a command killed at the timeout)."""
    postmaster_pid = data_dir / "postgres" / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError, ProcessLookupError):
        # SIGQUIT: PostgreSQL's immediate shutdown.
        os.kill(int(postmaster_pid.read_text().split()[0]), signal.SIGQUIT)


@pytest.fixture(scope="module")
def image_server(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, redis_server: RedisProcess
) -> Iterator[HttpServer]:
    redis_server.flush()
    server = start_image_server(tmp_path_factory.mktemp("image"), database_url, redis_server.url)
    yield server
    server.stop()


# --- the running image command --------------------------------------------------------------------


def test_image_command_answers_liveness(image_server: HttpServer) -> None:
    response = httpx.get(image_server.base_url + "/health", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_image_command_becomes_ready_on_the_given_database_and_redis(image_server: HttpServer) -> None:
    image_server.wait_until_ready("/health/ready")
    body = httpx.get(image_server.base_url + "/health/ready", timeout=5).json()
    assert body["status"] == "ok"
    assert body["rate_limit_store"] == "redis"


def test_image_command_serves_the_api_from_database_url(image_server: HttpServer, database_url: str) -> None:
    email = f"image-{secrets.token_hex(4)}@example.com"
    response = httpx.post(
        image_server.base_url + "/api/v1/auth/register", json={"email": email, "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 201, response.text
    assert fetch_rows(database_url, "SELECT email FROM app_user WHERE email = $1", email) == [(email,)]


def test_image_command_runs_the_api_without_the_admin_panel(image_server: HttpServer) -> None:
    """One service per container: `serve` starts `bookstore admin` beside the API unless told not to,
    and the admin runs from the same image as a container of its own."""
    entrypoint, subcommand, *arguments = read_image().command
    assert entrypoint == "bookstore"
    parsed = bookstore_command.commands[subcommand].make_context(subcommand, arguments).params
    assert parsed["admin_port"] == 0
    commands = [cmdline(pid) for pid in process_tree(image_server.pid)]
    assert len(commands) > 1  # `serve`, Granian and its workers
    assert not [command for command in commands if "admin" in command], commands
    assert "Admin:" not in image_server.output()


def test_image_command_writes_nothing_to_its_working_directory(image_server: HttpServer) -> None:
    """No .bookstore/ (embedded database, generated secret): the root filesystem may be read-only."""
    assert image_server.cwd is not None
    assert list(image_server.cwd.iterdir()) == []


def test_healthcheck_command_passes_against_the_running_server(image_server: HttpServer) -> None:
    image = read_image()
    env = local_environment(image)
    done = subprocess.run(
        healthcheck_command(image, env, image_server.port),
        env=env,
        capture_output=True,
        text=True,
        timeout=image.healthcheck_timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_healthcheck_command_fails_when_nothing_answers() -> None:
    image = read_image()
    env = local_environment(image)
    done = subprocess.run(
        healthcheck_command(image, env, free_port()),
        env=env,
        capture_output=True,
        text=True,
        timeout=image.healthcheck_timeout,
        check=False,
    )
    assert done.returncode != 0
    assert "Connection refused" in done.stderr


def test_stop_signal_ends_the_server_with_exit_code_0_within_the_grace_period(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    image = read_image()
    server = start_image_server(tmp_path, database_url, redis_url)
    try:
        assert server.process is not None
        started = time.monotonic()
        server.process.send_signal(image.stop_signal)
        try:
            returncode = server.process.wait(timeout=GRACE_PERIOD_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {GRACE_PERIOD_SECONDS:.0f} s after {image.stop_signal.name}")
        seconds = time.monotonic() - started
    finally:
        server.stop()
    assert returncode == 0, f"exit code {returncode} after {seconds:.1f} s:\n{server.log_tail()}"
    assert "Traceback" not in server.output()


def test_image_environment_without_database_url_stops_at_once_naming_it(tmp_path: Path, redis_url: str) -> None:
    image = read_image()
    env = local_environment(image, REDIS_URL=redis_url, BOOKSTORE_SECRET_KEY=secrets.token_hex(32))
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    command = ServerProcess(
        "bookstore (image command)",
        local_command(image.command, env, image_port=image.port, port=free_port()),
        env=env,
        log=tmp_path / "stdout.log",
        stderr_log=tmp_path / "stderr.log",
        cwd=workdir,
    )
    try:
        with contextlib.suppress(ServerError):  # it may exit before start() returns: as it should
            command.start()
        if command.process is not None:
            command.process.wait(timeout=10)  # at once: before any database or worker starts
    finally:
        returncode = command.stop()
        stop_embedded_postgres(workdir / ".bookstore")
    assert returncode == 1, command.output()
    assert "DATABASE_URL must be set in production" in command.output()
    assert "embedded PostgreSQL is for development only" in command.output()
    # No embedded database was started: it would have been created under ./.bookstore.
    assert "Database:" not in command.output()
    assert list(workdir.iterdir()) == []


# --- what the image is built from -----------------------------------------------------------------


def admin_port_default() -> int:
    """The port `bookstore admin` listens on unless told otherwise."""
    [port] = [parameter.default for parameter in bookstore_command.commands["admin"].params if parameter.name == "port"]
    assert isinstance(port, int)
    return port


def test_image_exposes_the_api_port_and_the_admin_panels() -> None:
    image = read_image()
    assert image.ports == (image.port, admin_port_default())


def test_image_healthcheck_asks_the_api_port() -> None:
    """The admin's containers, on the other port, bring a health check of their own (compose.yaml)."""
    image = read_image()
    assert f"http://127.0.0.1:{image.port}/health'" in image.healthcheck[-1]


def test_image_runs_as_a_numeric_non_root_user() -> None:
    user, _, group = read_image().user.partition(":")
    assert user.isdigit(), "Kubernetes' runAsNonRoot can only verify a numeric user"
    assert int(user) != 0
    assert group.isdigit()
    assert int(group) != 0


def test_image_copies_everything_bookstore_serve_reads_at_run_time() -> None:
    """The package, its migrations (found next to it by piccolo_app) and piccolo_conf (imported
    from the project root, which the editable install puts on sys.path), each under WORKDIR."""
    image = read_image()
    package, conf = importlib.util.find_spec("bookstore"), importlib.util.find_spec("piccolo_conf")
    assert package is not None
    assert package.origin is not None
    assert conf is not None
    assert conf.origin is not None
    needed = {Path(package.origin).parent, Path(APP_CONFIG.resolved_migrations_folder_path), Path(conf.origin)}
    copied = {destination for _, destination, source_stage in image.copies if source_stage == "builder"}
    for path in needed:
        assert f"{image.workdir}/{path.resolve().relative_to(ROOT)}" in copied, path
    assert f"{image.workdir}/.venv" in copied


def test_build_context_lets_in_exactly_what_the_builder_copies() -> None:
    ignore = IGNORE_FILES[0].read_text()
    assert all(path.read_text() == ignore for path in IGNORE_FILES), "keep .containerignore and .dockerignore equal"
    patterns = [line for line in ignore.splitlines() if line and not line.startswith("#")]
    assert patterns[0] == "*", "an allow-list: everything is left out unless let in by name"
    allowed = {line.removeprefix("!") for line in patterns if line.startswith("!")}
    builder = next(stage for stage in read_stages() if stage.name == "builder")
    from_context = {source for sources, _, stage in builder.copies() if stage is None for source in sources}
    mounted = {
        option.removeprefix("source=")
        for arguments in builder.arguments("RUN")
        for word in arguments.split()
        if word.startswith("--mount=type=bind")
        for option in word.split(",")
        if option.startswith("source=")
    }
    assert from_context | mounted == allowed
