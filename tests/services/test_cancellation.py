"""A task cancelled at any moment of a transaction or a statement leaves the database as
it found it: no lock held, no connection lost, nothing for the next transaction to wait on.

Tasks are cancelled in the middle of database work whenever a websocket client completes
an operation still running, graphql-core cancels the siblings of a field that failed, or
the server shuts down. Tortoise's transaction contexts did not survive a cancellation
while they began (models/sqlite_engine.py, models/postgres_engine.py).
"""

from __future__ import annotations

import asyncio
import os

import pytest
from tortoise.transactions import in_transaction

from services import sql

pytestmark = pytest.mark.usefixtures("db")
ON_POSTGRES = os.environ.get("TALLY_TEST_DATABASE_URL", "").startswith("postgres")
# More than a PostgreSQL pool's connections (5), and every moment of a BEGIN's exchange.
ROUNDS = 24
WAIT_SECONDS = 5


async def short_transaction() -> None:
    async with in_transaction():
        await sql.run(sql.connection(), "SELECT COUNT(*) FROM account", [])


async def cancelled_after(steps: int) -> None:
    """A transaction cancelled after `steps` turns of the event loop."""
    task = asyncio.create_task(short_transaction())
    for _ in range(steps):
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_transactions_cancelled_as_they_begin_leave_the_database_usable() -> None:
    for round_ in range(ROUNDS):
        # given a transaction cancelled somewhere in its start
        await cancelled_after(round_ % 8)
        # then the next one starts at once (it used to wait forever: on SQLite after
        # one such cancellation, on PostgreSQL once the pool had lost every connection)
        await asyncio.wait_for(short_transaction(), WAIT_SECONDS)


async def sleeping_statement(round_: int) -> None:
    # A text of its own each round: a new statement, which asyncpg prepares first.
    text = f"SELECT pg_sleep(?), COUNT(*) FROM member JOIN account ON true /* {round_} */"
    await sql.run(sql.connection(), text, [0.2])


async def sleeping_transaction(round_: int) -> None:
    async with in_transaction():
        conn = sql.connection()
        await sql.run(conn, f"SELECT id FROM account FOR UPDATE /* {round_} */", [])
        await sql.run(conn, "SELECT pg_sleep(?)", [0.2])


@pytest.mark.skipif(
    not ON_POSTGRES, reason="pooled connections are PostgreSQL's (.ci/run's second pass)"
)
async def test_statements_cancelled_at_any_moment_leave_no_lock_or_transaction_behind() -> None:
    # asyncpg sends a new statement's Parse and Describe without a Sync: cancelled before
    # its Bind, the server waits for the client inside a transaction holding the
    # statement's locks. The reset query asyncpg's pool sends on release ends it, which
    # is why the pool keeps that round trip.
    for round_ in range(ROUNDS):
        # given statements, alone and in transactions, cancelled while they run
        work = [sleeping_statement, sleeping_transaction] * 3
        tasks = [asyncio.create_task(job(round_)) for job in work]
        await asyncio.sleep(round_ * 0.001)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # then every other connection is idle, and the tables can be locked at once
        busy = await sql.fetch(
            sql.connection(),
            "SELECT COUNT(*), string_agg(state || ': ' || left(query, 60), ' | ') "
            "FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state <> 'idle'",
            [],
        )
        assert busy[0][0] == 0, f"round {round_}: {busy[0][1]}"
        async with in_transaction():
            await sql.run(
                sql.connection(), "LOCK TABLE account, member IN ACCESS EXCLUSIVE MODE NOWAIT", []
            )
