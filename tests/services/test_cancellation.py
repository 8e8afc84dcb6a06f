"""A task cancelled at any moment of a transaction or a statement leaves the database as
it found it: no lock held, no connection lost, nothing for the next transaction to wait on.

Tasks are cancelled in the middle of database work whenever a websocket client completes
an operation still running, graphql-core cancels the siblings of a field that failed, or
the server shuts down. Tortoise's transaction contexts did not survive a cancellation
while they began (models/sqlite_engine.py, models/postgres_engine.py).
"""

from __future__ import annotations

import asyncio

import pytest
from tortoise.transactions import in_transaction

from services import sql
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.usefixtures("db")
ON_POSTGRES_ONLY = pytest.mark.skipif(
    not ON_POSTGRES, reason="pooled connections are PostgreSQL's (.ci/run's second pass)"
)
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


@ON_POSTGRES_ONLY
async def test_statements_cancelled_at_any_moment_leave_no_lock_or_transaction_behind() -> None:
    # A pooled connection goes back without asyncpg's reset when its statement completed,
    # and with it when the statement was cut short (models/postgres_engine.py).
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


class Abandoned(Exception):
    pass


@ON_POSTGRES_ONLY
async def test_a_connection_whose_statement_failed_is_reset_before_it_is_reused() -> None:
    # given a statement that changed its session, then failed
    async def set_then_fail() -> None:
        async with sql.connection().acquire_connection() as connection:
            await connection.execute("SET statement_timeout = 4321")
            raise Abandoned

    with pytest.raises(Abandoned):
        await set_then_fail()

    # then no connection of the pool has kept the setting
    async def setting() -> str:
        rows = await sql.fetch(sql.connection(), "SHOW statement_timeout", [])
        return str(rows[0][0])

    assert set(await asyncio.gather(*(setting() for _ in range(10)))) == {"0"}
