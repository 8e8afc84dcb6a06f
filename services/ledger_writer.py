"""Batched, durable commits of ledger changes: one writer per process, one fsync per batch.

Changes that arrive while a batch commits wait in a queue; the writer then runs them
all in one transaction, each in a savepoint of its own, in arrival order, so each sees
the ones before it (TigerBeetle's requests, PostgreSQL's group commit). A change whose
work raises is rolled back to its savepoint alone and its caller gets the exception;
the others commit. Callers hear of their result only once the batch has committed.

On SQLite the batch holds the connection (and, through ``BEGIN IMMEDIATE``, the
database's write lock) and runs its statements inline (models/sqlite_engine.py); only
``BEGIN`` and the ``COMMIT`` that waits for the fsync leave the event loop's thread.
On PostgreSQL the batch is a transaction on the writer's own connection, run on a thread
and event loop of its own (models/postgres_writer.py says why), that first locks every
account it touches, in id order, so that batches of several processes never deadlock.

Work functions must not use the ORM (it would wait for the connection the batch holds
on SQLite, or use another connection on PostgreSQL): they get the batch's connection,
for ``services.sql``'s statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.fields import DatetimeField

from models import Account
from models.postgres_engine import CancellableAsyncpgClient
from models.postgres_writer import WriterConnection
from models.sqlite_engine import DirectSqlite, ImmediateSqliteClient
from services import sql

R = TypeVar("R")
S = TypeVar("S")
Work = Callable[[Any, Account], Awaitable[R]]
Then = Callable[[R], Coroutine[Any, Any, S]]

# Enough to share one fsync among every request a busy process has in flight, and few
# enough that the first of them does not wait long for the last.
MAX_BATCH = 256
# What a batch runs its statements on: the SQLite connection inline, the PostgreSQL
# writer's own, or (an account being created) Tortoise's transaction.
Connection = BaseDBAsyncClient | DirectSqlite | WriterConnection


class AccountMissing(LookupError):
    """The account a change was submitted for does not exist."""


@dataclass(eq=False)
class _Request(Generic[R]):
    account_id: int
    work: Work[R]
    then: Then[R, Any] | None
    # Resolved once the batch committed: with the task running `then`, or without one,
    # with the work's result.
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None


@dataclass(eq=False)
class LedgerWriter:
    """The process's writer of ledger changes; started on demand, idle when nothing waits."""

    _queue: deque[_Request[Any]] = field(default_factory=deque)
    _task: asyncio.Task[None] | None = None
    batches: int = 0

    async def submit(self, account_id: int, work: Work[R], then: Then[R, S]) -> S:
        """Run `work` on the locked account inside the next batch, then, once the batch
        committed, `then` with its result; what `then` returns.

        `then` runs in a task of its own, started by the writer: what must follow a commit
        (publishing it) happens even when the caller has gone away meanwhile.
        """
        following: asyncio.Task[S] = await self._enqueue(account_id, work, then)
        return await asyncio.shield(following)

    async def write(self, account_id: int, work: Work[R]) -> R:
        """Run `work` inside the next batch; its result once the batch committed."""
        result: R = await self._enqueue(account_id, work, None)
        return result

    def _enqueue(self, account_id: int, work: Work[R], then: Then[R, Any] | None) -> Any:
        loop = asyncio.get_running_loop()
        request: _Request[R] = _Request(account_id, work, then, loop.create_future())
        self._queue.append(request)
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._drain(), name="ledger-writer")
        return request.future

    async def aclose(self) -> None:
        """Let the batch in progress and those waiting finish (a server shutting down)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [
                    request
                    for request in itertools.islice(_popped(self._queue), MAX_BATCH)
                    if not request.future.done()
                ]
                if batch:
                    await self._commit(batch)
        except asyncio.CancelledError:
            for request in _popped(self._queue):
                request.future.cancel()
            raise

    async def _commit(self, batch: list[_Request[Any]]) -> None:
        try:
            if isinstance(sql.connection(), ImmediateSqliteClient):
                await self._on_sqlite(batch)
            else:
                await self._on_postgres(batch)
        except BaseException as failure:
            # Nothing of the batch committed: each caller hears why, its own error first.
            for request in batch:
                _settle(request.future, error=request.error or failure)
            if isinstance(failure, asyncio.CancelledError):
                raise
            return
        self.batches += 1
        for request in batch:
            if request.error is not None:
                _settle(request.future, error=request.error)
            elif request.then is None:
                _settle(request.future, result=request.result)
            else:
                after: asyncio.Task[Any] = asyncio.get_running_loop().create_task(
                    request.then(request.result)
                )
                _settle(request.future, result=after)

    async def _on_sqlite(self, batch: list[_Request[Any]]) -> None:
        client = sql.connection()
        assert isinstance(client, ImmediateSqliteClient)
        async with client.direct() as conn:
            await conn.begin()
            try:
                await _run_all(conn, batch)
                await asyncio.shield(conn.commit())
            except BaseException:
                await conn.rollback()
                raise

    async def _on_postgres(self, batch: list[_Request[Any]]) -> None:
        client = sql.connection()
        assert isinstance(client, CancellableAsyncpgClient)
        await client.writer.run(lambda conn: _postgres_batch(conn, batch))


async def _postgres_batch(conn: Any, batch: list[_Request[Any]]) -> None:
    """The batch's transaction, on the writer's own connection and loop."""
    await conn.execute_script("BEGIN")
    try:
        ids = sorted({request.account_id for request in batch})
        await sql.run(
            conn,
            "SELECT id FROM account WHERE id = ANY(?::bigint[]) ORDER BY id FOR UPDATE",
            [ids],
        )
        await _run_all(conn, batch)
        await conn.execute_script("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            await conn.execute_script("ROLLBACK")
        raise


def _popped(queue: deque[_Request[Any]]) -> Any:
    while queue:
        yield queue.popleft()


async def _run_all(conn: Connection, batch: list[_Request[Any]]) -> None:
    """Each request's work in a savepoint; its account read once per batch and kept current."""
    accounts: dict[int, Account] = {}
    # On PostgreSQL each statement is a round trip: a change's savepoint is released by
    # the next change's own statement (or by COMMIT) instead of one of its own.
    pending_release = False
    for request in batch:
        if request.future.done():
            continue
        account = accounts.get(request.account_id)
        if account is None:
            account = await read_account(conn, request.account_id)
            if account is None:
                request.error = AccountMissing(request.account_id)
                continue
            accounts[request.account_id] = account
        before = dict(account.__dict__)
        if isinstance(conn, DirectSqlite):
            conn.run_inline("SAVEPOINT change")
        elif pending_release:
            await conn.execute_script("RELEASE SAVEPOINT change; SAVEPOINT change")
        else:
            await conn.execute_script("SAVEPOINT change")
        pending_release = True
        try:
            request.result = await request.work(conn, account)
        except Exception as error:
            await _run(conn, "ROLLBACK TO SAVEPOINT change")
            account.__dict__.update(before)
            request.error = error
        if isinstance(conn, DirectSqlite):
            conn.run_inline("RELEASE SAVEPOINT change")


@asynccontextmanager
async def savepoint(conn: Any, account: Account, name: str) -> AsyncIterator[None]:
    """A part of the batch that an exception undoes alone, the account's copy included."""
    before = dict(account.__dict__)
    await _run(conn, f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        await _run(conn, f"ROLLBACK TO SAVEPOINT {name}")
        await _run(conn, f"RELEASE SAVEPOINT {name}")
        account.__dict__.update(before)
        raise
    await _run(conn, f"RELEASE SAVEPOINT {name}")


async def _run(conn: Connection, statement: str) -> None:
    if isinstance(conn, DirectSqlite):
        conn.run_inline(statement)
    else:
        await conn.execute_script(statement)


async def read_account(conn: Any, account_id: int) -> Account | None:
    """The account row as a model, read on `conn` (locked by the batch's transaction)."""
    rows = await sql.fetch_dicts(conn, _ACCOUNT_SQL, [account_id])
    if not rows:
        return None
    row = rows[0]
    # SQLite hands back timestamps as ISO text, which Tortoise parses with a pure-Python
    # parser; the C one takes the same text, and Tortoise then keeps the datetime as is.
    for name in _TIMESTAMPS:
        if isinstance(row[name], str):
            row[name] = datetime.fromisoformat(row[name])
    return Account._init_from_db(**row)


_TIMESTAMPS = [
    name
    for name, field in Account._meta.fields_map.items()
    if isinstance(field, DatetimeField) and name in Account._meta.fields_db_projection
]
_ACCOUNT_SQL = "SELECT {} FROM account WHERE id = ?".format(
    ", ".join(f'"{column}"' for column in Account._meta.fields_db_projection.values())
)


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
