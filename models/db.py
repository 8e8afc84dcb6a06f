"""Database configuration: from a URL to Tortoise's config, migrations, start and stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.migrations.api.migrate import migrate

APP = "models"

# A server's SQLite: WAL so readers never wait for the writer, and a busy
# timeout so a write waits for another process's transaction instead of failing.
SQLITE_DEFAULTS = {"journal_mode": "WAL", "busy_timeout": "10000", "synchronous": "FULL"}


def with_sqlite_defaults(url: str) -> str:
    """The URL with the server PRAGMAs added where the URL does not set them."""
    # Split by hand: urlunsplit would drop the empty host of `sqlite:////abs.db` and with
    # it a slash, turning the absolute path into a relative one.
    base, _, query = url.partition("?")
    params = dict(SQLITE_DEFAULTS)
    params.update(parse_qsl(query))
    return f"{base}?{urlencode(params)}"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def sqlite_file_path(url: str) -> str:
    """The database file a SQLite URL names.

    `sqlite://tally.db` is relative to the working folder; `sqlite:///abs/path.db`
    (Tortoise's spelling) and `sqlite:////abs/path.db` (SQLAlchemy's) are both absolute;
    `sqlite://:memory:` is an in-memory database.
    """
    path = url.removeprefix("sqlite://").partition("?")[0]
    if not url.startswith("sqlite://") or not path:
        raise ValueError(f"{url!r} is not a SQLite URL of the form sqlite://path/to/file.db.")
    return "/" + path.lstrip("/") if path.startswith("/") else path


def _require_sqlite_file(file_path: str) -> None:
    # aiosqlite never answers when the file cannot be opened, and the process hangs:
    # refuse a path whose folder does not exist, or that is a folder, before anything connects.
    if file_path == ":memory:":
        return
    path = Path(file_path).resolve()
    if not path.parent.is_dir():
        raise ValueError(f"The folder of the SQLite database {file_path!r} does not exist.")
    if path.is_dir():
        raise ValueError(f"The SQLite database {file_path!r} is a folder, not a file.")


def tortoise_config(database_url: str) -> dict[str, Any]:
    if is_sqlite(database_url):
        file_path = sqlite_file_path(database_url)
        _require_sqlite_file(file_path)
        connection = expand_db_url(with_sqlite_defaults(database_url))
        connection["credentials"]["file_path"] = file_path
        connection["engine"] = "models.sqlite_engine"
    else:
        connection = expand_db_url(database_url)
        connection["engine"] = "models.postgres_engine"
    return {
        "connections": {"default": connection},
        "apps": {
            APP: {
                "models": ["models"],
                "default_connection": "default",
                "migrations": "models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def open_database(database_url: str) -> None:
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def close_database() -> None:
    await Tortoise.close_connections()


async def migrate_database(database_url: str) -> list[str]:
    """Apply every migration not yet applied; safe to run on every start.

    The names of the migrations applied, in order (none when the database was up to date).
    """
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(name)

    try:
        await migrate(config=tortoise_config(database_url), progress=progress)
        return applied
    finally:
        # An open aiosqlite connection is a live thread that would keep the process from exiting.
        await Tortoise.close_connections()
