"""One validated, immutable settings object read from the environment.

Every knob of the service is here, with its environment variable, default and bounds, so that a
misconfiguration fails at start-up with a clear message instead of at the first request.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = ["MIN_SECRET_BYTES", "SCALAR_BUNDLE_NAME", "Settings", "SettingsError", "load_settings"]

MIN_SECRET_BYTES = 32
# The file of BOOKSTORE_DOCS_ASSETS_DIR the docs page loads: the npm package's dist/browser/standalone.js.
SCALAR_BUNDLE_NAME = "standalone.js"
_KEY_FILE_NAME = "secret_key"
# What a browser sends as Origin: scheme, lower-case host (a name, IPv4 or bracketed IPv6), port.
# A port as browsers write it in an Origin: 1-65535, no leading zero, never the scheme's default
# (which they leave out), so that every origin listed can match a request.
_ORIGIN = re.compile(
    r"(?P<scheme>https?)://(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::(?P<port>[1-9][0-9]{0,4}))?"
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# A host name as the admin's CSRF check compares it: the Origin's host, lower-case, without port.
_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|[0-9a-f:.]*:[0-9a-f:.]*")


def _is_origin(text: str) -> bool:
    match = _ORIGIN.fullmatch(text)
    if match is None:
        return False
    port = match["port"]
    return port is None or (int(port) <= 65535 and port != _DEFAULT_PORTS[match["scheme"]])


class SettingsError(ValueError):
    """Raised when the environment describes an invalid or unsafe configuration."""


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The service configuration. Build it with :func:`load_settings`, not by hand."""

    env: Literal["development", "production"] = "development"
    database_url: str | None = None
    data_dir: Path = Path(".bookstore")
    secret_key: Annotated[str, Meta(min_length=MIN_SECRET_BYTES)]
    access_token_ttl_seconds: Annotated[int, Meta(ge=60, le=24 * 3600)] = 15 * 60
    refresh_token_ttl_seconds: Annotated[int, Meta(ge=3600, le=90 * 24 * 3600)] = 14 * 24 * 3600
    docs_enabled: bool = True
    # A directory holding Scalar's browser bundle (`standalone.js`, fetched by scripts/fetch-scalar):
    # /docs then loads it from this service, and works offline. None: from the pinned CDN URL.
    docs_assets_dir: Path | None = None
    # How long a page cursor (`next_cursor`/`prev_cursor` of a listing) stays valid.
    page_cursor_ttl_seconds: Annotated[int, Meta(ge=1, le=30 * 24 * 3600)] = 24 * 3600
    db_pool_min_size: Annotated[int, Meta(ge=1, le=100)] = 2
    db_pool_max_size: Annotated[int, Meta(ge=1, le=100)] = 10
    # asyncpg's prepared-statement cache per connection (its default, 100). 0 behind PgBouncer in
    # transaction mode without prepared-statement support: statements are then unnamed, parsed each time.
    db_statement_cache_size: Annotated[int, Meta(ge=0, le=10_000)] = 100
    # Every wait on PostgreSQL is bounded; past a bound the request gets 503 (see README,
    # "Failure behaviour"). statement_timeout stops a slow statement in the server; the command
    # timeout, meant to be longer, is the client's bound for a server that does not answer.
    db_connect_timeout_seconds: Annotated[float, Meta(gt=0, le=60)] = 2.0
    db_acquire_timeout_seconds: Annotated[float, Meta(gt=0, le=60)] = 2.0
    db_statement_timeout_seconds: Annotated[float, Meta(ge=0.001, le=300)] = 3.0
    db_command_timeout_seconds: Annotated[float, Meta(gt=0, le=300)] = 5.0
    readiness_timeout_seconds: Annotated[float, Meta(gt=0, le=30)] = 1.0
    # OWASP's recommended argon2id minimum (19 MiB, 2 passes, 1 lane): ~15 ms per hash on one
    # core. RFC 9106's 64 MiB profile took ~80 ms of both cores and 64 MiB of every worker's peak
    # memory per login; raise these where logins are rare and memory is plenty.
    argon2_time_cost: Annotated[int, Meta(ge=1, le=10)] = 2
    argon2_memory_cost_kib: Annotated[int, Meta(ge=8 * 1024, le=1024 * 1024)] = 19 * 1024
    argon2_parallelism: Annotated[int, Meta(ge=1, le=16)] = 1
    max_request_body_bytes: Annotated[int, Meta(ge=1024, le=10 * 1024 * 1024)] = 64 * 1024
    # Cover images: where they are stored (default: <data_dir>/covers), the largest upload, and the
    # most pixels an image may have: decoding, rotating and thumbnailing one peaked at ~10 bytes a
    # pixel (16 million: ~170 MB), one image at a time per worker.
    covers_dir: Path | None = None
    cover_max_bytes: Annotated[int, Meta(ge=1024, le=50 * 1024 * 1024)] = 5 * 1024 * 1024
    cover_max_pixels: Annotated[int, Meta(ge=10_000, le=100_000_000)] = 16_000_000
    # The whole body must arrive within this long once the app starts reading it (else 408).
    body_read_timeout_seconds: Annotated[float, Meta(gt=0, le=300)] = 10.0
    # Passed to Granian by `bookstore serve`: the time allowed for a request head (hyper also
    # closes keep-alive connections idle this long), the connections each worker holds open at
    # once (further ones wait in the listen backlog), and that backlog.
    header_read_timeout_seconds: Annotated[float, Meta(ge=0.001, le=60)] = 30.0
    max_connections_per_worker: Annotated[int, Meta(ge=1, le=65536)] = 1024
    listen_backlog: Annotated[int, Meta(ge=128, le=65535)] = 1024
    # Also passed to Granian: how long a worker may take after SIGTERM to finish its in-flight
    # requests and close its pool and Redis client before it is killed (whole seconds, Granian's
    # bounds). compose's stop_grace_period and Kubernetes' grace period must outlast it.
    shutdown_timeout_seconds: Annotated[int, Meta(ge=1, le=1800)] = 20
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one JSON object per line, for log collectors; console: readable lines. None: json in
    # production, console otherwise.
    log_format: Literal["json", "console"] | None = None
    # One line per request (method, path template, status, duration, request id) at INFO.
    access_log: bool = True
    redis_url: str | None = None
    redis_timeout_seconds: Annotated[float, Meta(gt=0, le=5)] = 0.25
    rate_limit_enabled: bool = True
    rate_limit_requests: Annotated[int, Meta(ge=1)] = 1200
    rate_limit_window_seconds: Annotated[int, Meta(ge=1, le=86400)] = 60
    login_rate_limit_per_ip: Annotated[int, Meta(ge=1)] = 20
    login_rate_limit_per_email: Annotated[int, Meta(ge=1)] = 5
    register_rate_limit_per_ip: Annotated[int, Meta(ge=1)] = 5
    auth_rate_limit_window_seconds: Annotated[int, Meta(ge=1, le=86400)] = 60
    trusted_proxies: tuple[str, ...] = ()
    # Browser origins (scheme://host[:port]) allowed to call the API from their pages, or "*" for
    # any; none: CORS is off. Never with credentials: the API's bearer tokens need none.
    cors_origins: tuple[str, ...] = ()
    # Host names (no scheme, no port) the admin panel is reached at. Over HTTPS Piccolo admin's
    # CSRF check refuses any change whose Origin names another host; `bookstore admin` requires
    # them in production.
    admin_allowed_hosts: tuple[str, ...] = ()
    # Strict-Transport-Security max-age on every response; set it only when TLS is terminated in
    # front of the service. 0: the header is not sent. At most two years.
    hsts_seconds: Annotated[int, Meta(ge=0, le=2 * 365 * 24 * 3600)] = 0
    # Bearer token `/metrics` requires; unset, `/metrics` is open (keep it behind the proxy). The
    # token68 characters of RFC 9110, so it fits an Authorization header as it is.
    metrics_token: Annotated[str, Meta(min_length=16, max_length=256, pattern=r"^[A-Za-z0-9._~+/-]+=*$")] | None = None

    def __post_init__(self) -> None:
        if len(self.secret_key.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes - at `$.secret_key`")
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("must not exceed db_pool_max_size - at `$.db_pool_min_size`")
        if self.database_url is not None and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL - at `$.database_url`")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL - at `$.redis_url`")
        for network in self.trusted_proxies:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an IP address or network - at `$.trusted_proxies`") from None
        if self.docs_assets_dir is not None:
            bundle = self.docs_assets_dir / SCALAR_BUNDLE_NAME
            if not bundle.is_file() or not os.access(bundle, os.R_OK):
                raise ValueError(
                    f"{bundle} is not a readable file: fetch Scalar's bundle with scripts/fetch-scalar - at "
                    "`$.docs_assets_dir`"
                )
        for host in self.admin_allowed_hosts:
            if not _HOST_NAME.fullmatch(host):
                raise ValueError(
                    f"{host!r} is not a host name such as admin.example.com (lower-case, no scheme, no port) - at "
                    "`$.admin_allowed_hosts`"
                )
        if "*" in self.cors_origins and len(self.cors_origins) > 1:
            raise ValueError("'*' allows every origin and cannot be combined with others - at `$.cors_origins`")
        for origin in self.cors_origins:
            if origin != "*" and not _is_origin(origin):
                raise ValueError(
                    f"{origin!r} is not an origin such as https://app.example.com (http or https, lower-case "
                    "host, optional port, nothing after it) - at `$.cors_origins`"
                )

    @property
    def covers_path(self) -> Path:
        return self.covers_dir if self.covers_dir is not None else self.data_dir / "covers"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def logs_as_json(self) -> bool:
        return self.log_format == "json" if self.log_format is not None else self.is_production


# Environment variable -> settings field. DATABASE_URL keeps its conventional unprefixed name.
_ENV_FIELDS = {
    "BOOKSTORE_ENV": "env",
    "DATABASE_URL": "database_url",
    "BOOKSTORE_DATA_DIR": "data_dir",
    "BOOKSTORE_SECRET_KEY": "secret_key",
    "BOOKSTORE_ACCESS_TOKEN_TTL_SECONDS": "access_token_ttl_seconds",
    "BOOKSTORE_REFRESH_TOKEN_TTL_SECONDS": "refresh_token_ttl_seconds",
    "BOOKSTORE_DOCS_ENABLED": "docs_enabled",
    "BOOKSTORE_DOCS_ASSETS_DIR": "docs_assets_dir",
    "BOOKSTORE_PAGE_CURSOR_TTL_SECONDS": "page_cursor_ttl_seconds",
    "BOOKSTORE_DB_POOL_MIN_SIZE": "db_pool_min_size",
    "BOOKSTORE_DB_POOL_MAX_SIZE": "db_pool_max_size",
    "BOOKSTORE_DB_STATEMENT_CACHE_SIZE": "db_statement_cache_size",
    "BOOKSTORE_DB_CONNECT_TIMEOUT_SECONDS": "db_connect_timeout_seconds",
    "BOOKSTORE_DB_ACQUIRE_TIMEOUT_SECONDS": "db_acquire_timeout_seconds",
    "BOOKSTORE_DB_STATEMENT_TIMEOUT_SECONDS": "db_statement_timeout_seconds",
    "BOOKSTORE_DB_COMMAND_TIMEOUT_SECONDS": "db_command_timeout_seconds",
    "BOOKSTORE_READINESS_TIMEOUT_SECONDS": "readiness_timeout_seconds",
    "BOOKSTORE_ARGON2_TIME_COST": "argon2_time_cost",
    "BOOKSTORE_ARGON2_MEMORY_COST_KIB": "argon2_memory_cost_kib",
    "BOOKSTORE_ARGON2_PARALLELISM": "argon2_parallelism",
    "BOOKSTORE_MAX_REQUEST_BODY_BYTES": "max_request_body_bytes",
    "BOOKSTORE_COVERS_DIR": "covers_dir",
    "BOOKSTORE_COVER_MAX_BYTES": "cover_max_bytes",
    "BOOKSTORE_COVER_MAX_PIXELS": "cover_max_pixels",
    "BOOKSTORE_BODY_READ_TIMEOUT_SECONDS": "body_read_timeout_seconds",
    "BOOKSTORE_HEADER_READ_TIMEOUT_SECONDS": "header_read_timeout_seconds",
    "BOOKSTORE_MAX_CONNECTIONS_PER_WORKER": "max_connections_per_worker",
    "BOOKSTORE_LISTEN_BACKLOG": "listen_backlog",
    "BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS": "shutdown_timeout_seconds",
    "BOOKSTORE_LOG_LEVEL": "log_level",
    "BOOKSTORE_LOG_FORMAT": "log_format",
    "BOOKSTORE_ACCESS_LOG": "access_log",
    "REDIS_URL": "redis_url",
    "BOOKSTORE_REDIS_TIMEOUT_SECONDS": "redis_timeout_seconds",
    "BOOKSTORE_RATE_LIMIT_ENABLED": "rate_limit_enabled",
    "BOOKSTORE_RATE_LIMIT_REQUESTS": "rate_limit_requests",
    "BOOKSTORE_RATE_LIMIT_WINDOW_SECONDS": "rate_limit_window_seconds",
    "BOOKSTORE_LOGIN_RATE_LIMIT_PER_IP": "login_rate_limit_per_ip",
    "BOOKSTORE_LOGIN_RATE_LIMIT_PER_EMAIL": "login_rate_limit_per_email",
    "BOOKSTORE_REGISTER_RATE_LIMIT_PER_IP": "register_rate_limit_per_ip",
    "BOOKSTORE_AUTH_RATE_LIMIT_WINDOW_SECONDS": "auth_rate_limit_window_seconds",
    "BOOKSTORE_TRUSTED_PROXIES": "trusted_proxies",
    "BOOKSTORE_CORS_ORIGINS": "cors_origins",
    "BOOKSTORE_ADMIN_ALLOWED_HOSTS": "admin_allowed_hosts",
    "BOOKSTORE_HSTS_SECONDS": "hsts_seconds",
    "BOOKSTORE_METRICS_TOKEN": "metrics_token",
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read, validate and return the settings; raise :class:`SettingsError` on any problem.

    In production an explicit ``DATABASE_URL`` and ``BOOKSTORE_SECRET_KEY`` are required. In
    development a missing database is the embedded PostgreSQL, and a missing secret is generated
    once and kept in the data directory, so every worker process shares it.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {
        field: environ[name] for name, field in _ENV_FIELDS.items() if environ.get(name, "") != ""
    }
    for listed in ("trusted_proxies", "cors_origins", "admin_allowed_hosts"):  # comma-separated
        if isinstance(raw.get(listed), str):
            raw[listed] = [item.strip() for item in str(raw[listed]).split(",") if item.strip()]
    # Checked before anything starts: a container without it must fail, not run a private
    # database that dies with the container.
    if raw.get("env") == "production" and "database_url" not in raw:
        raise SettingsError(
            "DATABASE_URL must be set in production (postgresql://user:password@host:5432/database); "
            "the embedded PostgreSQL is for development only"
        )
    if "secret_key" not in raw:
        if raw.get("env") == "production":
            raise SettingsError(
                "BOOKSTORE_SECRET_KEY must be set in production "
                f"(at least {MIN_SECRET_BYTES} random bytes, e.g. `openssl rand -hex 32`)"
            )
        raw["secret_key"] = _development_secret(Path(str(raw.get("data_dir", ".bookstore"))))
    try:
        return msgspec.convert(raw, Settings, strict=False, dec_hook=_decode_path)
    except msgspec.ValidationError as error:
        raise SettingsError(_explain(str(error))) from None


def _decode_path(type_: type, value: object) -> object:
    if type_ is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot read {type_} from the environment")


def _explain(message: str) -> str:
    """Name the environment variable in a msgspec error such as "... - at `$.field`"."""
    for name, field in _ENV_FIELDS.items():
        message = message.replace(f"`$.{field}`", name)
    return f"invalid configuration: {message}"


def _development_secret(data_dir: Path) -> str:
    """Return the persisted development secret, creating it atomically on first use."""
    path = data_dir / _KEY_FILE_NAME
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Write a private temporary file, then hard-link it into place: link() fails if the name
        # exists, so when several processes start at once exactly one secret wins and none is
        # ever read half-written.
        candidate = data_dir / f".{_KEY_FILE_NAME}.{os.getpid()}"
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(MIN_SECRET_BYTES))
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    secret = path.read_text().strip()
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise SettingsError(f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes")
    return secret
