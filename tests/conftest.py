"""Test fixtures: one migrated database per run, emptied before each test.

SQLite by default. With TALLY_TEST_DATABASE_URL=postgres://… the whole suite runs
on PostgreSQL instead, in a fresh database created for the run and dropped after;
a server that cannot be reached is then a failure, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from tortoise import Tortoise

from api.app import create_app
from api.settings import Settings
from models.db import close_database, is_sqlite, migrate_database, open_database
from models.enums import Role
from services.access import Principal
from services.accounts import NewAccount, PlanTerms, create_account
from services.broadcast import LocalBroker
from services.carrier import SimulatedCarrier
from services.clock import FrozenClock
from services.payments import SimulatedPaymentProvider
from services.runtime import Runtime

START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
MIGRATIONS_TABLE = "tortoise_migrations"
# The suite's pass on PostgreSQL (.ci/run's second one), for the tests only it can run.
ON_POSTGRES = os.environ.get("TALLY_TEST_DATABASE_URL", "").startswith("postgres")


def _with_database_name(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _fresh_database(tmp_path_factory: pytest.TempPathFactory, label: str) -> Iterator[str]:
    """A new, empty database for this run: a SQLite file, or a PostgreSQL database dropped after."""
    base = os.environ.get("TALLY_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite://{tmp_path_factory.mktemp(label) / 'tally.db'}"
        return
    name = f"tally_{label}_{uuid.uuid4().hex[:12]}"
    admin_dsn = base.replace("postgres://", "postgresql://", 1)

    async def execute(sql: str) -> None:
        connection = await asyncpg.connect(admin_dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database_name(base, name)
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _fresh_database(tmp_path_factory, "test")


@pytest.fixture(scope="session")
def server_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of its own for tests that run `tally` as real processes."""
    yield from _fresh_database(tmp_path_factory, "server")


@pytest.fixture(scope="session")
def browser_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of its own for the browser tests' server: `tally seed-demo` needs it empty."""
    yield from _fresh_database(tmp_path_factory, "browser")


@pytest.fixture(scope="session")
async def database(database_url: str) -> AsyncIterator[str]:
    await migrate_database(database_url)
    await open_database(database_url)
    yield database_url
    await close_database()


async def _empty_tables(url: str) -> None:
    connection = Tortoise.get_connection("default")
    tables = [
        model._meta.db_table
        for app in Tortoise.apps.values()
        for model in app.values()
        if model._meta.db_table != MIGRATIONS_TABLE
    ]
    if is_sqlite(url):
        await connection.execute_script(
            "PRAGMA foreign_keys=OFF;"
            + "".join(f'DELETE FROM "{t}";' for t in tables)
            + "PRAGMA foreign_keys=ON;"
        )
    else:
        quoted = ", ".join(f'"{t}"' for t in tables)
        await connection.execute_script(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")


@pytest.fixture
async def db(database: str) -> str:
    await _empty_tables(database)
    return database


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings(database: str) -> Settings:
    return Settings(database_url=database, secret_key="test-secret", webhook_secret="hook-secret")


@pytest.fixture
async def account(db: str, clock: FrozenClock) -> NewAccount:
    return await create_account(
        name="Acme",
        admin_name="Ada",
        admin_email="ada@acme.example",
        timezone="America/New_York",
        plan=PlanTerms(monthly_credits=1000, price_per_credit_cents=2),
        clock=clock,
    )


@pytest.fixture
def admin(account: NewAccount) -> Principal:
    return Principal(
        account_id=account.account.id,
        member_id=account.admin.id,
        role=Role.ADMIN,
        token_id=account.token.token.id,
    )


@pytest.fixture
def payments() -> SimulatedPaymentProvider:
    return SimulatedPaymentProvider()


@pytest.fixture
def broker() -> LocalBroker:
    return LocalBroker()


@pytest.fixture
def runtime(clock: FrozenClock, payments: SimulatedPaymentProvider, broker: LocalBroker) -> Runtime:
    return Runtime(clock=clock, carrier=SimulatedCarrier(), payments=payments, broker=broker)


@pytest.fixture
async def client(settings: Settings, runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, runtime=runtime, manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
        yield http


@dataclass
class Api:
    """A GraphQL client over real HTTP (in-process ASGI transport)."""

    http: httpx.AsyncClient

    async def __call__(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
