"""The compose stack (compose.yaml, .env.example, deploy/compose/Caddyfile), checked against the
code without a container engine (none exists here).

The `migrate` service's command line (the image's ENTRYPOINT + the service's command, with the
image's and the service's environment) runs against an empty database of the tests' PostgreSQL,
and so do the `docker compose run --rm migrate …` commands the README documents; the `admin`
service's command line then serves the admin panel from that database, probed by its health check.
The rest reads the files (the Caddyfile also through `caddy adapt`): what compose would do with
them is validated by `check-jsonschema` in .ci/run; what a container engine would do with them was
not run here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address, ip_network
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec
import pytest
import yaml
from granian.http import HTTP1Settings
from litestar_granian.supervisor import _KILL_GRACE_PERIOD
from piccolo.apps.migrations.commands.base import BaseMigrationManager

from bookstore.admin.app import check_admin_settings
from bookstore.admin.login_limits import LOGIN_PATH
from bookstore.cli import main as bookstore_command
from bookstore.piccolo_app import APP_CONFIG
from bookstore.settings import _ENV_FIELDS, Settings, load_settings
from bookstore.testing import HttpServer, ServerError, fetch_rows, free_port
from bookstore.testing.processes import process_tree
from tests.deploy.test_image import (
    local_command,
    local_environment,
    local_healthcheck,
    option,
    read_image,
    read_stages,
)
from tests.helpers import PASSWORD
from tests.servers import RedisProcess, skip_absent_tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
CADDYFILE = ROOT / "deploy" / "compose" / "Caddyfile"
# Variables the stack cannot run without and that no file may supply a value for.
REQUIRED_SECRETS = {"POSTGRES_PASSWORD", "BOOKSTORE_SECRET_KEY"}
# Settings compose.yaml fixes for the stack instead of passing them on from .env.
FIXED_SETTINGS = {
    "BOOKSTORE_ENV",
    "DATABASE_URL",
    "REDIS_URL",
    "BOOKSTORE_TRUSTED_PROXIES",
    "BOOKSTORE_SECRET_KEY",
    "BOOKSTORE_COVERS_DIR",
}
# Only the embedded database and the development secret live in the data directory.
UNUSED_SETTINGS = {"BOOKSTORE_DATA_DIR"}
# Settings compose.yaml passes on from .env with a default of the stack's own.
STACK_DEFAULTS = {"BOOKSTORE_ADMIN_ALLOWED_HOSTS": "localhost"}
ADMIN_EMAIL = "admin@example.com"
# The stack's services that run the image and keep running (`migrate` runs once).
IMAGE_SERVERS = ("api", "admin")
# The image's services, one-shot included.
IMAGE_SERVICES = (*IMAGE_SERVERS, "migrate")
SETTING_DEFAULTS = {field.name: field.default for field in msgspec.structs.fields(Settings)}
# Compose's ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error} and ${NAME?error}.
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}")
_ASSIGNMENT = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


class MissingVariableError(Exception):
    """A ``${NAME:?message}`` whose variable is unset or empty: compose refuses to start."""


def interpolate(text: str, environment: Mapping[str, str]) -> str:
    """Compose's variable interpolation of ``text`` (the forms in ``_VARIABLE``)."""

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match["name"], match["operator"], match["argument"]
        value = environment.get(name)
        missing = value is None or (value == "" and operator is not None and operator.startswith(":"))
        if missing and operator is not None and operator.endswith("?"):
            raise MissingVariableError(f"{name}: {argument}")
        if missing and operator is not None and operator.endswith("-"):
            return argument
        return value or ""

    return _VARIABLE.sub(replace, text)


def load_compose(environment: Mapping[str, str]) -> dict[str, Any]:
    """compose.yaml as compose reads it: parsed, then every string value interpolated."""

    def resolve(value: Any) -> Any:
        if isinstance(value, str):
            return interpolate(value, environment)
        if isinstance(value, dict):
            return {key: resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [resolve(item) for item in value]
        return value

    compose: dict[str, Any] = resolve(yaml.safe_load(COMPOSE.read_text()))
    return compose


def stack_environment(**values: str) -> dict[str, str]:
    """What .env would hold: the secrets set, nothing else."""
    return {"POSTGRES_PASSWORD": secrets.token_hex(24), "BOOKSTORE_SECRET_KEY": secrets.token_hex(32), **values}


def env_example() -> dict[str, tuple[bool, str]]:
    """.env.example's variables: name -> (commented out, value)."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := _ASSIGNMENT.match(line):
            found[match["name"]] = (match["comment"] is not None, match["value"])
    return found


def load_diagram_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_diagram", ROOT / "docs" / "diagram.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"{duration!r}: expected whole seconds such as 30s"
    return float(match.group(1))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(stack_environment())


@contextlib.contextmanager
def new_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty database on the tests' PostgreSQL, dropped afterwards.

    Created from the session's URL directly: the ``database_url`` fixture would empty the session's
    tables after the test, which assumes they were migrated."""
    server_url = os.environ["DATABASE_URL"]
    name = f"{prefix}_{secrets.token_hex(6)}"
    fetch_rows(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        fetch_rows(server_url, f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A new, empty database, as a fresh postgres volume would be."""
    with new_database("compose") as url:
        yield url


def run_migrate_service(
    compose: dict[str, Any], database_url: str, directory: Path, command: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """What the `migrate` container runs: ENTRYPOINT + ``command`` (the service's own by default,
    as `docker compose run --rm migrate ARGS` replaces it by ARGS) with the image's ENV and the
    service's environment, on this machine: DATABASE_URL points at ``database_url`` instead of the
    stack's `postgres` host, and the project's venv stands in for the image's."""
    service = compose["services"]["migrate"]
    environment = {**service["environment"], "DATABASE_URL": database_url}
    workdir = directory / "workdir"
    workdir.mkdir(parents=True, exist_ok=True)
    env = local_environment(read_image(), **environment)
    entrypoint = read_stages()[-1].exec_form("ENTRYPOINT")
    program = shutil.which(entrypoint[0], path=env["PATH"])
    assert program, f"{entrypoint[0]} is not on the image's PATH"
    argv = [program, *entrypoint[1:], *(service["command"] if command is None else command)]
    return subprocess.run(argv, env=env, cwd=workdir, capture_output=True, text=True, timeout=120, check=False)


def healthcheck_url(test: list[str]) -> str:
    """The URL a health check of the image's python asks."""
    match = re.search(r"urlopen\('([^']+)'", test[-1])
    assert match, f"{test}: expected python urllib asking one URL"
    return match.group(1)


def start_admin_service(compose: dict[str, Any], database_url: str, redis_url: str, directory: Path) -> HttpServer:
    """What the `admin` container runs: ENTRYPOINT + the service's command with the image's ENV and
    the service's environment, on this machine: the stack's database and Redis replaced by the
    given ones, its port by a free loopback one. Ready when its health check's URL answers 200."""
    service = compose["services"]["admin"]
    environment = {**service["environment"], "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    workdir = directory / "workdir"
    workdir.mkdir(parents=True)
    env = local_environment(read_image(), **environment)
    entrypoint = read_stages()[-1].exec_form("ENTRYPOINT")
    port = free_port()
    url = urlsplit(healthcheck_url(service["healthcheck"]["test"]))
    server = HttpServer(
        "bookstore admin (admin service command)",
        local_command([*entrypoint, *service["command"]], env, image_port=url.port or 80, port=port),
        port=port,
        env=env,
        log=directory / "stdout.log",
        stderr_log=directory / "stderr.log",
        cwd=workdir,
        ready_path=url.path,
    )
    try:
        server.start()
    except ServerError as error:
        pytest.fail(str(error))
    return server


def resident_mebibytes(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    total_kib = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):  # one that has just exited holds nothing
            status = Path(f"/proc/{member}/status").read_text().splitlines()
            total_kib += sum(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return total_kib / 1024


def compose_bytes(size: str) -> int:
    """A compose byte value such as 256M or 1g."""
    match = re.fullmatch(r"(\d+)([bkmg]?)", size.lower())
    assert match, f"{size!r}: expected a size such as 256M"
    return int(match.group(1)) * 1024 ** "bkmg".index(match.group(2) or "b")


def public_tables(database_url: str) -> set[str]:
    return {row[0] for row in fetch_rows(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


# --- the one-shot service and the commands run through it ----------------------------------------


def test_migrate_service_creates_every_table_in_an_empty_database(
    compose: dict[str, Any], empty_database: str, tmp_path: Path
) -> None:
    assert public_tables(empty_database) == set()
    done = run_migrate_service(compose, empty_database, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Migrations applied." in done.stdout
    expected = {table._meta.tablename for table in APP_CONFIG.table_classes}
    assert expected <= public_tables(empty_database)
    applied = fetch_rows(empty_database, "SELECT name FROM migration WHERE app_name = $1", APP_CONFIG.app_name)
    migrations = BaseMigrationManager().get_migration_modules(str(APP_CONFIG.resolved_migrations_folder_path))
    assert sorted(row[0] for row in applied) == sorted(migrations)


def test_migrate_service_succeeds_again_on_a_migrated_database(
    compose: dict[str, Any], empty_database: str, tmp_path: Path
) -> None:
    """Every `docker compose up` runs it, and the API waits for it to succeed."""
    assert run_migrate_service(compose, empty_database, tmp_path).returncode == 0
    again = run_migrate_service(compose, empty_database, tmp_path)
    assert again.returncode == 0, again.stderr


def test_two_migrations_started_together_on_an_empty_database_both_succeed(
    compose: dict[str, Any], empty_database: str, tmp_path: Path
) -> None:
    """A replica's `serve` and the migrate job (or two replicas) may start at the same moment; the
    second waits for the first's advisory lock instead of applying the same migration twice."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda n: run_migrate_service(compose, empty_database, tmp_path / str(n)), (1, 2)))
    assert [run.returncode for run in runs] == [0, 0], [run.stderr[-2000:] for run in runs]
    applied = fetch_rows(empty_database, "SELECT name FROM migration WHERE app_name = $1", APP_CONFIG.app_name)
    assert len(applied) == len({row[0] for row in applied})  # each migration recorded once


def test_createsuperuser_runs_through_the_migrate_service(
    compose: dict[str, Any], empty_database: str, tmp_path: Path
) -> None:
    """docker compose run --rm migrate createsuperuser --email E --password P"""
    done = run_migrate_service(
        compose, empty_database, tmp_path, ["createsuperuser", "--email", "admin@example.com", "--password", PASSWORD]
    )
    assert done.returncode == 0, done.stderr
    rows = fetch_rows(empty_database, "SELECT admin FROM app_user WHERE email = 'admin@example.com'")
    assert [row[0] for row in rows] == [True]


def test_seed_runs_through_the_migrate_service(compose: dict[str, Any], empty_database: str, tmp_path: Path) -> None:
    """docker compose run --rm migrate seed --books N"""
    done = run_migrate_service(compose, empty_database, tmp_path, ["seed", "--books", "25", "--seed", "1"])
    assert done.returncode == 0, done.stderr
    assert fetch_rows(empty_database, "SELECT count(*) FROM book")[0][0] == 25


# --- the services ---------------------------------------------------------------------------------


def test_api_runs_at_least_two_replicas_of_the_image_the_migrate_service_builds(compose: dict[str, Any]) -> None:
    api, migrate = compose["services"]["api"], compose["services"]["migrate"]
    assert api["deploy"]["replicas"] >= 2
    assert api["image"] == migrate["image"]
    assert (ROOT / migrate["build"]["context"] / migrate["build"]["dockerfile"]).resolve() == ROOT / "Containerfile"
    assert "build" not in api
    # Never looked for in a registry: it exists once the migrate service's build has run.
    assert api["pull_policy"] == "never"


def test_api_command_is_the_image_command(compose: dict[str, Any]) -> None:
    """Spelled out in compose.yaml for the proxy and the diagram; it must not drift from the image."""
    assert compose["services"]["api"]["command"] == read_stages()[-1].exec_form("CMD")


def test_admin_runs_once_from_the_image_the_migrate_service_builds(compose: dict[str, Any]) -> None:
    """One replica: Piccolo admin's own login limiter counts in the process's memory."""
    admin, migrate = compose["services"]["admin"], compose["services"]["migrate"]
    assert admin["image"] == migrate["image"]
    assert "build" not in admin
    assert admin["pull_policy"] == "never"
    assert admin.get("deploy", {}).get("replicas", 1) == 1
    assert admin["restart"] == "unless-stopped"


def test_admin_command_serves_the_admin_panel_without_migrating(compose: dict[str, Any]) -> None:
    """`bookstore admin` parses it (unknown or misspelt options fail here), on a port the image
    exposes, on every interface, leaving migrations to the migrate service."""
    command = compose["services"]["admin"]["command"]
    assert command[0] == "admin"
    parsed = bookstore_command.commands["admin"].make_context("admin", list(command[1:])).params
    assert parsed["host"] == "0.0.0.0"  # noqa: S104 - checks the container listens on every interface; binds nothing
    assert parsed["port"] in read_image().ports
    assert parsed["migrate"] is False


def test_migrate_service_runs_once(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert "deploy" not in migrate


def test_only_the_proxy_publishes_ports(compose: dict[str, Any]) -> None:
    """The API and the admin panel are reached through the proxy, at one origin."""
    publishing = {name for name, service in compose["services"].items() if service.get("ports")}
    assert publishing == {"proxy"}
    assert compose["services"]["proxy"]["ports"] == ["8080:80"]
    assert all("expose" not in service for service in compose["services"].values())


@pytest.mark.parametrize("name", IMAGE_SERVERS)
def test_server_trusts_forwarded_addresses_from_the_proxy_only(compose: dict[str, Any], name: str) -> None:
    """Rate limits (the admin's logins included) count the client the proxy names, not the proxy."""
    service, proxy = compose["services"][name], compose["services"]["proxy"]
    [(network, attachment)] = proxy["networks"].items()
    address = ip_address(attachment["ipv4_address"])
    assert service["environment"]["BOOKSTORE_TRUSTED_PROXIES"] == f"{address}/32"
    assert network in service["networks"]
    [subnet] = [ip_network(pool["subnet"]) for pool in compose["networks"][network]["ipam"]["config"]]
    assert address in subnet


def test_proxy_cannot_reach_the_database_or_redis(compose: dict[str, Any]) -> None:
    services, networks = compose["services"], compose["networks"]
    for store in ("postgres", "redis"):
        assert set(services[store]["networks"]).isdisjoint(services["proxy"]["networks"])
        assert all(networks[network]["internal"] is True for network in services[store]["networks"])


def test_services_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    conditions = {
        name: {dependency: rule["condition"] for dependency, rule in service.get("depends_on", {}).items()}
        for name, service in services.items()
    }
    assert conditions["api"] == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    # The admin panel needs what the API needs, and serves the schema the migration made.
    assert conditions["admin"] == conditions["api"]
    assert conditions["migrate"] == {"postgres": "service_healthy"}
    # Not the admin: the API is served whether the admin panel is up or not.
    assert conditions["proxy"] == {"api": "service_healthy"}


def test_every_service_waited_for_as_healthy_has_a_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    awaited = {
        dependency
        for service in services.values()
        for dependency, rule in service.get("depends_on", {}).items()
        if rule["condition"] == "service_healthy"
    }
    assert awaited == {"postgres", "redis", "api"}
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    # The API's is the image's HEALTHCHECK (GET /health).
    assert "healthcheck" not in services["api"]
    assert read_image().healthcheck


@pytest.mark.parametrize("name", IMAGE_SERVERS)
def test_every_server_of_the_image_is_checked_on_its_own_port(compose: dict[str, Any], name: str) -> None:
    """The image's HEALTHCHECK asks the API's port: a service listening on another one brings its own."""
    service, image = compose["services"][name], read_image()
    test = service["healthcheck"]["test"] if "healthcheck" in service else ["CMD", *image.healthcheck]
    assert test[0] == "CMD"  # exec form: the image has no shell to spare
    url = urlsplit(healthcheck_url(test))
    assert (url.hostname, url.port) == ("127.0.0.1", int(option(service["command"], "--port")))


def test_admin_health_check_asks_a_page_piccolos_login_limiter_does_not_count(compose: dict[str, Any]) -> None:
    """Piccolo admin counts every request to its login path, GETs included, and blocks the address
    for minutes after 20 in 5 minutes: a health check there would mark the admin unhealthy."""
    healthcheck = compose["services"]["admin"]["healthcheck"]
    path = urlsplit(healthcheck_url(healthcheck["test"])).path
    assert not path.startswith(LOGIN_PATH)
    assert seconds(healthcheck["timeout"]) < seconds(healthcheck["interval"])
    # The request gives up before Docker gives up on the check, so a hung admin reads as a failure.
    match = re.search(r"timeout=(\d+)\)", healthcheck["test"][-1])
    assert match
    assert float(match.group(1)) < seconds(healthcheck["timeout"])


def test_postgres_health_check_asks_over_tcp(compose: dict[str, Any]) -> None:
    """While a new volume is initialised, the image's temporary server listens on the Unix socket
    only: a check over the socket would report ready before the real server runs."""
    command = compose["services"]["postgres"]["healthcheck"]["test"]
    assert option(command, "--host") == "127.0.0.1"


def test_redis_keeps_nothing_on_disk(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    assert option(command, "--save") == ""
    assert option(command, "--appendonly") == "no"


def test_api_stop_grace_period_outlasts_the_shutdown_timeout(compose: dict[str, Any]) -> None:
    """Docker sends SIGKILL after the grace period; `bookstore serve` exits by the shutdown timeout
    (Granian's worker kill timeout), at the latest when litestar-granian's supervisor kills Granian
    a few seconds later."""
    latest_exit = SETTING_DEFAULTS["shutdown_timeout_seconds"] + _KILL_GRACE_PERIOD
    assert seconds(compose["services"]["api"]["stop_grace_period"]) > latest_exit


def test_admin_stop_grace_period_outlasts_the_shutdown_timeout(compose: dict[str, Any]) -> None:
    """`bookstore admin` runs Granian itself, which kills a worker still busy after the shutdown timeout."""
    assert seconds(compose["services"]["admin"]["stop_grace_period"]) > SETTING_DEFAULTS["shutdown_timeout_seconds"]


@pytest.mark.parametrize("name", IMAGE_SERVICES)
def test_services_of_the_image_are_confined(compose: dict[str, Any], name: str) -> None:
    """Read-only root filesystem with a writable /tmp, no capabilities, no privilege escalation."""
    service = compose["services"][name]
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]  # noqa: S108 - checks the mount; writes nothing
    assert service["cap_drop"] == ["ALL"]
    assert "cap_add" not in service
    assert service["security_opt"] == ["no-new-privileges:true"]


def test_admin_reaches_the_proxy_and_the_stores_and_no_covers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services["admin"]["networks"]) == set(services["api"]["networks"])
    # It reads and writes no cover image.
    assert "volumes" not in services["admin"]


def test_admin_has_resource_limits(compose: dict[str, Any]) -> None:
    limits = compose["services"]["admin"]["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0
    assert compose_bytes(limits["memory"]) >= 128 * 1024**2


def test_every_service_rotates_its_logs(compose: dict[str, Any]) -> None:
    assert compose["x-logging"]["options"]["max-size"]
    for name, service in compose["services"].items():
        assert service["logging"] == compose["x-logging"], name


def test_database_url_matches_the_postgres_service(compose: dict[str, Any]) -> None:
    password = "p4ssw0rd"
    loaded = load_compose(stack_environment(POSTGRES_PASSWORD=password))
    postgres = loaded["services"]["postgres"]["environment"]
    for service in IMAGE_SERVICES:
        url = urlsplit(loaded["services"][service]["environment"]["DATABASE_URL"])
        assert (url.hostname, url.port) == ("postgres", 5432)
        assert (url.username, url.password) == (postgres["POSTGRES_USER"], password)
        assert url.path == f"/{postgres['POSTGRES_DB']}"
        assert urlsplit(loaded["services"][service]["environment"]["REDIS_URL"]).hostname == "redis"


# --- secrets and settings -------------------------------------------------------------------------


@pytest.mark.parametrize("secret", sorted(REQUIRED_SECRETS))
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_stack_refuses_to_start_without_a_secret(secret: str, value: str | None) -> None:
    environment = stack_environment()
    if value is None:
        del environment[secret]
    else:
        environment[secret] = value
    with pytest.raises(MissingVariableError, match=f"^{secret}: set {secret} in .env"):
        load_compose(environment)


def test_secrets_are_only_ever_required_never_defaulted() -> None:
    uses = [match for match in _VARIABLE.finditer(COMPOSE.read_text()) if match["name"] in REQUIRED_SECRETS]
    assert {match["name"] for match in uses} == REQUIRED_SECRETS
    assert all(match["operator"] == ":?" for match in uses), [match[0] for match in uses]


def test_compose_uses_only_braced_variables() -> None:
    """`$NAME` would be interpolated too, and escape the checks here."""
    assert re.findall(r"\$(?![{$])", COMPOSE.read_text()) == []


@pytest.mark.parametrize("service", IMAGE_SERVICES)
def test_every_setting_reaches_every_container_of_the_image(compose: dict[str, Any], service: str) -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    environment = raw["services"][service]["environment"]
    passed_on = {name for name, value in environment.items() if value == f"${{{name}:-{STACK_DEFAULTS.get(name, '')}}}"}
    assert passed_on == set(_ENV_FIELDS) - FIXED_SETTINGS - UNUSED_SETTINGS
    assert FIXED_SETTINGS - {"BOOKSTORE_TRUSTED_PROXIES"} <= set(environment)
    assert compose["services"][service]["environment"]["BOOKSTORE_ENV"] == "production"


def test_env_example_names_every_setting_and_every_compose_variable() -> None:
    listed = env_example()
    compose_variables = {match["name"] for match in _VARIABLE.finditer(COMPOSE.read_text())}
    assert set(_ENV_FIELDS) - set(listed) == set()
    assert compose_variables - set(listed) == set()
    # And nothing that neither reads.
    assert set(listed) - set(_ENV_FIELDS) - compose_variables == set()


def test_env_example_ships_no_secret_and_no_active_setting() -> None:
    active = {name: value for name, (commented, value) in env_example().items() if not commented}
    assert active == dict.fromkeys(REQUIRED_SECRETS, "")


def test_env_example_shows_each_optional_settings_default() -> None:
    listed = env_example()

    def spelled(value: object) -> str:
        if value is None:  # no default: the line shows an empty value
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float):
            return f"{value:g}"
        if isinstance(value, tuple):  # comma-separated lists
            return ",".join(value)
        return str(value)

    for name in set(_ENV_FIELDS) - FIXED_SETTINGS:
        default = STACK_DEFAULTS.get(name, spelled(SETTING_DEFAULTS[_ENV_FIELDS[name]]))
        assert listed[name] == (True, default), name


def test_env_example_with_its_secrets_filled_in_is_a_valid_production_configuration(
    compose: dict[str, Any],
) -> None:
    settings = load_settings(compose["services"]["api"]["environment"])
    assert settings.is_production
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.trusted_proxies == (compose["services"]["api"]["environment"]["BOOKSTORE_TRUSTED_PROXIES"],)


def test_admin_environment_is_a_valid_production_configuration_for_the_admin(compose: dict[str, Any]) -> None:
    """`bookstore admin` refuses to start in production without the host names it is reached at."""
    settings = load_settings(compose["services"]["admin"]["environment"])
    assert settings.is_production
    check_admin_settings(settings)
    # The proxy's address, http://localhost:8080/admin/, unless .env names the site.
    assert settings.admin_allowed_hosts == ("localhost",)
    named = load_compose(stack_environment(BOOKSTORE_ADMIN_ALLOWED_HOSTS="admin.example.com,books.example.com"))
    named_settings = load_settings(named["services"]["admin"]["environment"])
    assert named_settings.admin_allowed_hosts == ("admin.example.com", "books.example.com")


# --- the proxy ------------------------------------------------------------------------------------


def test_proxy_mounts_the_caddyfile_read_only_and_keeps_its_state_in_volumes(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["proxy"]
    caddyfile, *state = proxy["volumes"]
    source, target, mode = caddyfile.split(":")
    assert (ROOT / source).resolve() == CADDYFILE
    assert (target, mode) == ("/etc/caddy/Caddyfile", "ro")
    assert sorted(volume.split(":")[1] for volume in state) == ["/config", "/data"]
    assert all(volume.split(":")[0] in compose["volumes"] for volume in state)
    assert proxy["read_only"] is True
    assert (proxy["cap_drop"], proxy["cap_add"]) == (["ALL"], ["NET_BIND_SERVICE"])


def test_proxy_does_not_expose_the_probes_or_the_metrics(compose: dict[str, Any]) -> None:
    assert re.search(r"^\s*respond /health\* 404$", CADDYFILE.read_text(), re.MULTILINE)
    assert re.search(r"^\s*respond /metrics\* 404$", CADDYFILE.read_text(), re.MULTILINE)


def test_proxy_replaces_the_clients_request_id(compose: dict[str, Any]) -> None:
    """The API trusts X-Request-ID from its proxies only; the proxy must not pass on the client's."""
    assert re.search(r"^\s*header_up X-Request-ID \{http\.request\.uuid\}$", CADDYFILE.read_text(), re.MULTILINE)


def test_caddy_balances_over_every_api_replica_on_the_api_port(compose: dict[str, Any]) -> None:
    caddyfile = CADDYFILE.read_text()
    match = re.search(r"^\s*dynamic a (\S+) (\d+)", caddyfile, re.MULTILINE)
    assert match, "reverse_proxy should find the replicas in DNS (dynamic a)"
    assert match.group(1) == "api"
    assert match.group(2) == option(compose["services"]["api"]["command"], "--port")
    assert re.search(r"^\s*lb_policy round_robin$", caddyfile, re.MULTILINE)
    # Compressing would rewrite the ETags that If-Match compares as text.
    assert not re.search(r"^\s*encode\b", caddyfile, re.MULTILINE)


def test_caddy_routes_the_admin_paths_to_the_admin_port(compose: dict[str, Any]) -> None:
    caddyfile = CADDYFILE.read_text()
    assert re.search(r"^\s*@admin path /admin /admin/\*$", caddyfile, re.MULTILINE)
    match = re.search(r"^\s*reverse_proxy @admin (\S+):(\d+) \{$", caddyfile, re.MULTILINE)
    assert match, "the admin paths should go to the admin service"
    assert match.group(1) == "admin"
    assert match.group(2) == option(compose["services"]["admin"]["command"], "--port")


def test_caddy_answers_probes_itself_then_routes_the_admin_then_the_api(compose: dict[str, Any]) -> None:
    """Caddy orders directives itself (`respond` before `reverse_proxy`, a matcher before none):
    its own JSON form of the Caddyfile shows the order requests meet the routes in."""
    done = run_caddy("adapt")
    assert done.returncode == 0, done.stderr
    [server] = msgspec.json.decode(done.stdout)["apps"]["http"]["servers"].values()
    routes = [
        (tuple(path for matcher in route.get("match", []) for path in matcher["path"]), route["handle"])
        for route in server["routes"]
    ]
    answered = [paths for paths, [handler] in routes if handler["handler"] == "static_response"]
    assert sorted(answered) == [("/health*",), ("/metrics*",)]
    [(admin_paths, [admin]), (api_paths, [api])] = routes[len(answered) :]
    assert admin_paths == ("/admin", "/admin/*")
    admin_port = option(compose["services"]["admin"]["command"], "--port")
    assert admin["upstreams"] == [{"dial": f"admin:{admin_port}"}]
    assert api_paths == ()
    assert api["dynamic_upstreams"]["name"] == "api"


def test_caddy_drops_idle_connections_before_the_api_and_the_admin_do() -> None:
    keepalives = [int(value) for value in re.findall(r"^\s*keepalive (\d+)s$", CADDYFILE.read_text(), re.MULTILINE)]
    assert len(keepalives) == 2  # to the API, to the admin
    # `bookstore admin` keeps Granian's default idle timeout.
    admin_idle_seconds = HTTP1Settings().header_read_timeout / 1000
    assert max(keepalives) < min(SETTING_DEFAULTS["header_read_timeout_seconds"], admin_idle_seconds)


def run_caddy(command: str) -> subprocess.CompletedProcess[str]:
    """``caddy <command>`` of the compose stack's Caddyfile (skipped without caddy, except under CI)."""
    caddy = shutil.which("caddy")
    if caddy is None:
        skip_absent_tool("caddy is not installed (Debian: apt-get install caddy)")
    return subprocess.run(
        [caddy, command, "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_caddyfile_is_valid() -> None:
    done = run_caddy("validate")
    assert done.returncode == 0, done.stderr
    assert "Valid configuration" in done.stdout + done.stderr


# --- the admin service, run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def migrated_database() -> Iterator[str]:
    """An empty database of the tests' PostgreSQL that the migrate service has migrated: what the
    admin finds when compose starts it (never emptied by the session's per-test truncation)."""
    with new_database("compose_admin") as url:
        yield url


@pytest.fixture(scope="module")
def admin_service(
    compose: dict[str, Any],
    migrated_database: str,
    redis_server: RedisProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[HttpServer]:
    directory = tmp_path_factory.mktemp("migrate")
    migrated = run_migrate_service(compose, migrated_database, directory)
    assert migrated.returncode == 0, migrated.stderr
    # As compose.yaml's header says: docker compose run --rm migrate createsuperuser ...
    created = run_migrate_service(
        compose, migrated_database, directory, ["createsuperuser", "--email", ADMIN_EMAIL, "--password", PASSWORD]
    )
    assert created.returncode == 0, created.stderr
    # Its logins count against the service's limits in Redis, where other tests' logins may be.
    redis_server.flush()
    server = start_admin_service(compose, migrated_database, redis_server.url, tmp_path_factory.mktemp("admin"))
    yield server
    server.stop()


def log_in(admin: HttpServer, email: str) -> httpx.Response:
    """Piccolo admin's login, with the CSRF cookie and header its page would send."""
    return httpx.post(
        admin.base_url + LOGIN_PATH,
        json={"username": email, "password": PASSWORD},
        cookies={"csrftoken": "token"},
        headers={"X-CSRFToken": "token"},
        timeout=10,
    )


def test_admin_service_serves_the_admin_panel_at_admin(admin_service: HttpServer) -> None:
    page = httpx.get(admin_service.base_url + "/admin/", timeout=5)
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    bare = httpx.get(admin_service.base_url + "/admin", timeout=5)
    assert (bare.status_code, bare.headers["location"]) == (307, admin_service.base_url + "/admin/")


def test_superuser_made_through_the_migrate_service_logs_in_to_the_admin_service(admin_service: HttpServer) -> None:
    assert log_in(admin_service, "nobody@example.com").status_code == 401
    login = log_in(admin_service, ADMIN_EMAIL)
    assert login.status_code == 200, login.text
    # Production: browsers keep the session cookie over HTTPS only (and from http://localhost).
    cookie = login.headers["set-cookie"].lower()
    assert cookie.startswith("id=")
    assert "; secure" in cookie
    assert "; httponly" in cookie


def test_admin_health_check_passes_against_the_running_admin(
    compose: dict[str, Any], admin_service: HttpServer
) -> None:
    healthcheck = compose["services"]["admin"]["healthcheck"]
    env = local_environment(read_image())
    port = urlsplit(healthcheck_url(healthcheck["test"])).port
    assert port is not None
    done = subprocess.run(
        local_healthcheck(healthcheck["test"][1:], env, container_port=port, port=admin_service.port),
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds(healthcheck["timeout"]),
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_admin_health_check_keeps_passing_past_piccolos_login_limit(
    compose: dict[str, Any], admin_service: HttpServer
) -> None:
    """21 checks from one address: one more than Piccolo admin lets an address ask its login path."""
    path = urlsplit(healthcheck_url(compose["services"]["admin"]["healthcheck"]["test"])).path
    statuses = [httpx.get(admin_service.base_url + path, timeout=5).status_code for _ in range(21)]
    assert statuses == [200] * 21


def test_admin_service_stays_within_its_memory_limit(compose: dict[str, Any], admin_service: HttpServer) -> None:
    """After a login (argon2id hashing): Granian's main process and its worker."""
    assert log_in(admin_service, ADMIN_EMAIL).status_code == 200
    limit = compose_bytes(compose["services"]["admin"]["deploy"]["resources"]["limits"]["memory"]) / 1024**2
    used = resident_mebibytes(admin_service.pid)
    assert used < limit * 0.8, f"{used:.0f} MiB of {limit:.0f} MiB"


# --- the diagram ----------------------------------------------------------------------------------


def test_readme_diagram_is_drawn_from_the_current_compose_file() -> None:
    diagram = load_diagram_script()
    block = diagram.readme_block(diagram.describe(diagram.load_compose(COMPOSE)))
    assert block in (ROOT / "README.md").read_text(), "run: uv run python docs/diagram.py"


def test_svg_diagram_is_drawn_from_the_current_compose_file() -> None:
    diagram = load_diagram_script()
    dot = diagram.dot_source(diagram.describe(diagram.load_compose(COMPOSE)))
    svg = (ROOT / "docs" / "architecture.svg").read_text()
    assert f"<!-- dot source sha256: {diagram.source_digest(dot)} -->" in svg, "run: uv run python docs/diagram.py"


def test_diagram_follows_the_replica_count() -> None:
    diagram = load_diagram_script()
    compose = diagram.load_compose(COMPOSE)
    compose["services"]["api"]["deploy"]["replicas"] = 3
    mermaid = diagram.mermaid_source(diagram.describe(compose))
    assert "api: 3 replicas of bookstore:local" in mermaid
    assert mermaid.count("Granian :8000, 2 workers") == 3
