"""load_settings: environment variables in, one validated Settings out, or a SettingsError."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bookstore.settings import MIN_SECRET_BYTES, Settings, SettingsError, load_settings

SECRET = "s" * 64
DATABASE_URL = "postgresql://db.example/bookstore"


def environ(tmp_path: Path, **values: str) -> dict[str, str]:
    """An environment with a private data directory, so no test writes into the working tree."""
    return {"BOOKSTORE_DATA_DIR": str(tmp_path), **values}


# --- defaults -------------------------------------------------------------------------------------


def test_defaults_with_only_a_secret() -> None:
    settings = load_settings({"BOOKSTORE_SECRET_KEY": SECRET})

    assert settings.env == "development"
    assert settings.is_production is False
    assert settings.database_url is None
    assert settings.data_dir == Path(".bookstore")
    assert settings.secret_key == SECRET
    assert settings.access_token_ttl_seconds == 15 * 60
    assert settings.refresh_token_ttl_seconds == 14 * 24 * 3600
    assert settings.docs_enabled is True
    assert settings.db_pool_min_size == 2
    assert settings.db_pool_max_size == 10
    assert settings.db_connect_timeout_seconds == 2.0
    assert settings.db_acquire_timeout_seconds == 2.0
    assert settings.db_statement_timeout_seconds == 3.0
    assert settings.db_command_timeout_seconds == 5.0
    assert settings.readiness_timeout_seconds == 1.0
    assert settings.argon2_time_cost == 2
    assert settings.argon2_memory_cost_kib == 19 * 1024
    assert settings.argon2_parallelism == 1
    assert settings.max_request_body_bytes == 64 * 1024
    assert settings.log_level == "INFO"


def test_empty_variables_count_as_unset(tmp_path: Path) -> None:
    settings = load_settings(
        environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_LOG_LEVEL="", BOOKSTORE_ACCESS_TOKEN_TTL_SECONDS="")
    )
    assert settings.log_level == "INFO"
    assert settings.access_token_ttl_seconds == 15 * 60


def test_unrelated_variables_are_ignored(tmp_path: Path) -> None:
    settings = load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_UNKNOWN="1", HOME="/root"))
    assert settings.secret_key == SECRET


def test_values_are_read_from_their_variables(tmp_path: Path) -> None:
    settings = load_settings(
        environ(
            tmp_path,
            BOOKSTORE_ENV="production",
            DATABASE_URL=DATABASE_URL,
            BOOKSTORE_SECRET_KEY=SECRET,
            BOOKSTORE_ACCESS_TOKEN_TTL_SECONDS="120",
            BOOKSTORE_REFRESH_TOKEN_TTL_SECONDS="7200",
            BOOKSTORE_DB_POOL_MIN_SIZE="3",
            BOOKSTORE_DB_POOL_MAX_SIZE="4",
            BOOKSTORE_DB_COMMAND_TIMEOUT_SECONDS="2.5",
            BOOKSTORE_ARGON2_TIME_COST="2",
            BOOKSTORE_ARGON2_MEMORY_COST_KIB="16384",
            BOOKSTORE_ARGON2_PARALLELISM="2",
            BOOKSTORE_MAX_REQUEST_BODY_BYTES="2048",
            BOOKSTORE_LOG_LEVEL="DEBUG",
        )
    )
    assert settings.is_production is True
    assert settings.database_url == DATABASE_URL
    assert settings.data_dir == tmp_path
    assert settings.access_token_ttl_seconds == 120
    assert settings.refresh_token_ttl_seconds == 7200
    assert (settings.db_pool_min_size, settings.db_pool_max_size) == (3, 4)
    assert settings.db_command_timeout_seconds == 2.5
    assert (settings.argon2_time_cost, settings.argon2_memory_cost_kib, settings.argon2_parallelism) == (2, 16384, 2)
    assert settings.max_request_body_bytes == 2048
    assert settings.log_level == "DEBUG"


def test_load_settings_reads_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKSTORE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BOOKSTORE_SECRET_KEY", SECRET)
    monkeypatch.setenv("BOOKSTORE_ACCESS_TOKEN_TTL_SECONDS", "300")
    assert load_settings().access_token_ttl_seconds == 300


def test_settings_are_immutable() -> None:
    settings = load_settings({"BOOKSTORE_SECRET_KEY": SECRET})
    with pytest.raises(AttributeError):
        settings.secret_key = "t" * 64  # type: ignore[misc]


# --- booleans -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["false", "0"])
def test_docs_enabled_false_parses_to_false(tmp_path: Path, text: str) -> None:
    settings = load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_DOCS_ENABLED=text))
    assert settings.docs_enabled is False


@pytest.mark.parametrize("text", ["true", "1"])
def test_docs_enabled_true_parses_to_true(tmp_path: Path, text: str) -> None:
    settings = load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_DOCS_ENABLED=text))
    assert settings.docs_enabled is True


def test_docs_enabled_rejects_a_non_boolean(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_DOCS_ENABLED"):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_DOCS_ENABLED="maybe"))


# --- the docs page's Scalar bundle ----------------------------------------------------------------


def test_docs_assets_dir_is_unset_by_default(tmp_path: Path) -> None:
    assert load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET)).docs_assets_dir is None


def test_docs_assets_dir_holding_the_bundle_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "standalone.js").write_text("// Scalar")
    settings = load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_DOCS_ASSETS_DIR=str(tmp_path)))
    assert settings.docs_assets_dir == tmp_path


def test_docs_assets_dir_without_the_bundle_is_rejected_naming_the_script(tmp_path: Path) -> None:
    with pytest.raises(
        SettingsError, match=r"standalone\.js is not a readable file.*fetch-scalar.*BOOKSTORE_DOCS_ASSETS_DIR"
    ):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_DOCS_ASSETS_DIR=str(tmp_path)))


def test_docs_assets_dir_whose_bundle_is_a_directory_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "standalone.js").mkdir()
    with pytest.raises(SettingsError, match="BOOKSTORE_DOCS_ASSETS_DIR"):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_DOCS_ASSETS_DIR=str(tmp_path)))


# --- the database in production ------------------------------------------------------------------


def test_production_without_database_url_is_rejected_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^DATABASE_URL must be set in production .*for development only$"):
        load_settings(environ(tmp_path, BOOKSTORE_ENV="production", BOOKSTORE_SECRET_KEY=SECRET))


def test_production_with_an_empty_database_url_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings(environ(tmp_path, BOOKSTORE_ENV="production", BOOKSTORE_SECRET_KEY=SECRET, DATABASE_URL=""))


def test_production_without_anything_names_the_database_first_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings(environ(tmp_path, BOOKSTORE_ENV="production"))
    assert list(tmp_path.iterdir()) == []


def test_development_without_database_url_uses_the_embedded_database(tmp_path: Path) -> None:
    assert load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET)).database_url is None


# --- the secret -----------------------------------------------------------------------------------


def test_production_without_secret_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_SECRET_KEY"):
        load_settings(environ(tmp_path, BOOKSTORE_ENV="production", DATABASE_URL=DATABASE_URL))


def test_production_without_secret_key_does_not_generate_one(tmp_path: Path) -> None:
    with pytest.raises(SettingsError):
        load_settings(environ(tmp_path, BOOKSTORE_ENV="production", DATABASE_URL=DATABASE_URL))
    assert not (tmp_path / "secret_key").exists()


def test_production_with_an_empty_secret_key_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_SECRET_KEY"):
        load_settings(environ(tmp_path, BOOKSTORE_ENV="production", DATABASE_URL=DATABASE_URL, BOOKSTORE_SECRET_KEY=""))


@pytest.mark.parametrize("env", ["development", "production"])
def test_secret_shorter_than_32_bytes_is_rejected(tmp_path: Path, env: str) -> None:
    short = "k" * (MIN_SECRET_BYTES - 1)
    with pytest.raises(SettingsError, match="BOOKSTORE_SECRET_KEY"):
        load_settings(environ(tmp_path, BOOKSTORE_ENV=env, DATABASE_URL=DATABASE_URL, BOOKSTORE_SECRET_KEY=short))


@pytest.mark.parametrize("env", ["development", "production"])
def test_secret_of_exactly_32_bytes_is_accepted(tmp_path: Path, env: str) -> None:
    secret = "k" * MIN_SECRET_BYTES
    settings = load_settings(
        environ(tmp_path, BOOKSTORE_ENV=env, DATABASE_URL=DATABASE_URL, BOOKSTORE_SECRET_KEY=secret)
    )
    assert settings.secret_key == secret


def test_development_without_secret_creates_a_private_secret_file(tmp_path: Path) -> None:
    settings = load_settings(environ(tmp_path))

    secret_file = tmp_path / "secret_key"
    assert secret_file.read_text().strip() == settings.secret_key
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_generated_development_secret_is_long_enough(tmp_path: Path) -> None:
    assert len(load_settings(environ(tmp_path)).secret_key.encode()) >= MIN_SECRET_BYTES


def test_generated_development_secret_leaves_no_temporary_file(tmp_path: Path) -> None:
    load_settings(environ(tmp_path))
    assert [path.name for path in tmp_path.iterdir()] == ["secret_key"]


def test_second_development_load_returns_the_same_secret(tmp_path: Path) -> None:
    first = load_settings(environ(tmp_path))
    second = load_settings(environ(tmp_path))
    assert second.secret_key == first.secret_key


def test_development_secrets_differ_between_data_directories(tmp_path: Path) -> None:
    first = load_settings(environ(tmp_path / "one"))
    second = load_settings(environ(tmp_path / "two"))
    assert first.secret_key != second.secret_key


def test_development_creates_a_missing_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    load_settings(environ(data_dir))
    assert (data_dir / "secret_key").is_file()


def test_development_uses_an_existing_secret_file(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("p" * 40 + "\n")
    assert load_settings(environ(tmp_path)).secret_key == "p" * 40


def test_development_rejects_a_short_secret_file(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("short\n")
    with pytest.raises(SettingsError, match="secret_key"):
        load_settings(environ(tmp_path))


def test_explicit_secret_in_development_does_not_create_a_secret_file(tmp_path: Path) -> None:
    settings = load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET))
    assert settings.secret_key == SECRET
    assert not (tmp_path / "secret_key").exists()


# --- invalid values -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "5", "1.5", "-60", str(24 * 3600 + 1)])
def test_invalid_access_token_ttl_is_rejected_naming_the_variable(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_ACCESS_TOKEN_TTL_SECONDS"):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_ACCESS_TOKEN_TTL_SECONDS=value))


def test_settings_error_message_does_not_use_the_internal_field_path(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_ACCESS_TOKEN_TTL_SECONDS="abc"))
    assert "$.access_token_ttl_seconds" not in str(error.value)


def test_pool_min_size_above_max_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_DB_POOL_MIN_SIZE"):
        load_settings(
            environ(
                tmp_path,
                BOOKSTORE_SECRET_KEY=SECRET,
                BOOKSTORE_DB_POOL_MIN_SIZE="6",
                BOOKSTORE_DB_POOL_MAX_SIZE="5",
            )
        )


def test_pool_min_size_equal_to_max_size_is_accepted(tmp_path: Path) -> None:
    settings = load_settings(
        environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_DB_POOL_MIN_SIZE="5", BOOKSTORE_DB_POOL_MAX_SIZE="5")
    )
    assert settings.db_pool_min_size == settings.db_pool_max_size == 5


def test_pool_min_size_above_the_default_max_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_DB_POOL_MIN_SIZE"):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_DB_POOL_MIN_SIZE="11"))


def test_unknown_environment_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_ENV"):
        load_settings(environ(tmp_path, BOOKSTORE_ENV="staging", BOOKSTORE_SECRET_KEY=SECRET))


def test_unknown_log_level_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_LOG_LEVEL"):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_LOG_LEVEL="VERBOSE"))


def test_argon2_memory_cost_below_the_minimum_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_ARGON2_MEMORY_COST_KIB"):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_ARGON2_MEMORY_COST_KIB="1024"))


def test_non_positive_command_timeout_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_DB_COMMAND_TIMEOUT_SECONDS"):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_DB_COMMAND_TIMEOUT_SECONDS="0"))


@pytest.mark.parametrize(
    "variable",
    [
        "BOOKSTORE_DB_CONNECT_TIMEOUT_SECONDS",
        "BOOKSTORE_DB_ACQUIRE_TIMEOUT_SECONDS",
        "BOOKSTORE_DB_STATEMENT_TIMEOUT_SECONDS",
        "BOOKSTORE_READINESS_TIMEOUT_SECONDS",
    ],
)
def test_non_positive_database_timeouts_are_rejected(tmp_path: Path, variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, **{variable: "0"}))


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_settings_built_directly_validate_the_pool_sizes() -> None:
    with pytest.raises(ValueError, match="db_pool_max_size"):
        Settings(secret_key=SECRET, db_pool_min_size=6, db_pool_max_size=5)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("REDIS_URL", "localhost:6379"), ("DATABASE_URL", "mysql://db/bookstore")],
)
def test_service_urls_must_have_the_right_scheme(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({"BOOKSTORE_DATA_DIR": str(tmp_path), variable: value})


def test_shutdown_timeout_defaults_to_20_seconds_and_is_read_from_its_variable(tmp_path: Path) -> None:
    assert load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET)).shutdown_timeout_seconds == 20
    settings = load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS="45"))
    assert settings.shutdown_timeout_seconds == 45


# Granian takes whole seconds from 1 to 1800 (30 minutes).
@pytest.mark.parametrize("value", ["0", "-5", "1801", "2.5", "20s", "soon"])
def test_shutdown_timeout_outside_granians_whole_seconds_is_rejected_naming_it(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS"):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS=value))


# --- logs, CORS, HSTS ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "as_json"),
    [
        ({}, False),
        ({"BOOKSTORE_ENV": "production", "DATABASE_URL": DATABASE_URL}, True),
        ({"BOOKSTORE_LOG_FORMAT": "json"}, True),
        ({"BOOKSTORE_ENV": "production", "DATABASE_URL": DATABASE_URL, "BOOKSTORE_LOG_FORMAT": "console"}, False),
    ],
    ids=["development", "production", "json chosen", "console chosen"],
)
def test_logs_are_json_in_production_unless_chosen_otherwise(
    tmp_path: Path, values: dict[str, str], as_json: bool
) -> None:
    assert load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, **values)).logs_as_json is as_json


def test_log_format_must_be_json_or_console(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_LOG_FORMAT"):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_LOG_FORMAT="text"))


def test_access_lines_are_on_unless_switched_off(tmp_path: Path) -> None:
    assert load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET)).access_log is True
    assert (
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_ACCESS_LOG="false")).access_log is False
    )


def test_cors_origins_are_off_by_default_and_read_as_a_comma_separated_list(tmp_path: Path) -> None:
    assert load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET)).cors_origins == ()
    settings = load_settings(
        environ(
            tmp_path,
            BOOKSTORE_SECRET_KEY=SECRET,
            BOOKSTORE_CORS_ORIGINS=" https://app.example.com, http://localhost:5173,https://[::1]:8443 ",
        )
    )
    assert settings.cors_origins == ("https://app.example.com", "http://localhost:5173", "https://[::1]:8443")
    assert load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_CORS_ORIGINS="*")).cors_origins == (
        "*",
    )


@pytest.mark.parametrize(
    "value",
    [
        "*,https://app.example.com",
        "app.example.com",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://App.Example.com",
        "ftp://app.example.com",
        "https://user@app.example.com",
        "https://*.example.com",
        "null",
        "https://app.example.com:0",
        "https://app.example.com:99999",
        "https://app.example.com:080",
        "https://app.example.com:443",
        "http://app.example.com:80",
    ],
)
def test_cors_origins_must_be_exact_origins_or_a_lone_star(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="BOOKSTORE_CORS_ORIGINS"):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_CORS_ORIGINS=value))


def test_hsts_is_off_by_default_and_bounded(tmp_path: Path) -> None:
    assert load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET)).hsts_seconds == 0
    year = load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_HSTS_SECONDS="31536000"))
    assert year.hsts_seconds == 31_536_000
    for value in ("-1", str(2 * 365 * 24 * 3600 + 1), "a year"):
        with pytest.raises(SettingsError, match="BOOKSTORE_HSTS_SECONDS"):
            load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_HSTS_SECONDS=value))


def test_admin_allowed_hosts_are_read_as_a_comma_separated_list_of_host_names(tmp_path: Path) -> None:
    assert load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET)).admin_allowed_hosts == ()
    settings = load_settings(
        environ(
            tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_ADMIN_ALLOWED_HOSTS=" admin.example.com, localhost,::1 "
        )
    )
    assert settings.admin_allowed_hosts == ("admin.example.com", "localhost", "::1")


@pytest.mark.parametrize(
    "value",
    ["https://admin.example.com", "admin.example.com:8001", "Admin.Example.com", "admin.example.com/admin", "*"],
)
def test_admin_allowed_hosts_must_be_bare_host_names(tmp_path: Path, value: str) -> None:
    # The CSRF check compares them with the Origin's host name: anything else could never match.
    with pytest.raises(SettingsError, match="BOOKSTORE_ADMIN_ALLOWED_HOSTS"):
        load_settings(environ(tmp_path, BOOKSTORE_SECRET_KEY=SECRET, BOOKSTORE_ADMIN_ALLOWED_HOSTS=value))
