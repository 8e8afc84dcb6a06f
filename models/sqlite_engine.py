"""Tortoise's SQLite backend, with write transactions that take the lock up front and
survive being cancelled while they start.

Tortoise opens transactions with a deferred ``BEGIN``; a transaction that reads
and then writes can then fail at once with "database is locked" when another
process (the CLI, a second server) holds the write lock, whatever the busy
timeout. ``BEGIN IMMEDIATE`` takes the write lock at the start and waits up to
``busy_timeout`` for it instead.

Tortoise's transaction context takes the connection's lock, then awaits ``BEGIN``. A task
cancelled during that wait (a websocket client completing its mutation, graphql-core
cancelling a failed field's siblings, a shutdown) never reaches ``__aexit__``: the lock
stayed taken and every later transaction of the process waited for it forever, while
the ``BEGIN`` finished in aiosqlite's thread and held SQLite's write lock.

``DirectSqlite`` is the ledger writer's way in (services/ledger_writer.py): while it holds
the client's lock, a batch's statements run on the event loop's thread straight on the
``sqlite3`` connection, each costing microseconds instead of a round trip through
aiosqlite's thread; only the statements that wait (``BEGIN IMMEDIATE`` for another
process's lock, ``COMMIT`` for its fsync) go through that thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from typing import Any, cast

import aiosqlite
from tortoise.backends.base.client import (
    ConnectionWrapper,
    TransactionalDBClient,
    TransactionContext,
)
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connections
from tortoise.exceptions import IntegrityError, OperationalError, TransactionManagementError


class ImmediateTransactionWrapper(SqliteTransactionWrapper):
    async def begin(self) -> None:
        # The connection is in autocommit mode between transactions, so unlike Tortoise's
        # own begin() there is nothing to commit first: one thread hop fewer per write.
        try:
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class CancellableTransactionContext(SqliteTransactionContext):
    """Tortoise's context, undoing a start that did not complete, cancelled or failed."""

    async def __aenter__(self) -> TransactionalDBClient:
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            try:
                await self.connection.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
        except BaseException:
            # Shielded: a second cancellation must not leave the lock taken either.
            await asyncio.shield(self._abandon())
            raise
        return cast(TransactionalDBClient, self.connection)

    async def _abandon(self) -> None:
        try:
            raw = self.connection._connection
            if raw is not None:
                # Queued behind the BEGIN in aiosqlite's thread, so it runs once that has;
                # sqlite3 rolls back only a transaction that is open.
                await raw.rollback()
        finally:
            self._trxlock.release()


class ImmediateSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        _refuse_inside_direct()
        return CancellableTransactionContext(ImmediateTransactionWrapper(self), self._lock)

    def acquire_connection(self) -> ConnectionWrapper[aiosqlite.Connection]:
        _refuse_inside_direct()
        return super().acquire_connection()

    async def create_connection(self, with_db: bool) -> None:
        # Tortoise's own, but the connection may be used from the event loop's thread too
        # (DirectSqlite), always under this client's lock, never at once from both.
        if self._connection is None:
            self._connection = await aiosqlite.connect(
                self.filename, isolation_level=None, check_same_thread=False
            )
            self._connection._conn.row_factory = sqlite3.Row
            for pragma, value in self.pragmas.items():
                cursor = await self._connection.execute(f"PRAGMA {pragma}={value}")
                await cursor.close()
            await self._post_connect()

    @contextlib.asynccontextmanager
    async def direct(self) -> AsyncIterator[DirectSqlite]:
        """The connection for inline statements, exclusive until the block ends."""
        async with self._lock:
            if self._connection is None:
                await self.create_connection(with_db=True)
            assert self._connection is not None
            token = _inside_direct.set(True)
            try:
                yield DirectSqlite(self, self._connection)
            finally:
                _inside_direct.reset(token)


# Set while a task holds the connection for inline statements: an ORM query from that
# task would wait for the lock it holds itself, forever. It fails at once instead.
_inside_direct: ContextVar[bool] = ContextVar("tally_inside_direct", default=False)


def _refuse_inside_direct() -> None:
    if _inside_direct.get():
        raise RuntimeError(
            "an ORM query inside a ledger change: use the change's connection (tx.conn)"
        )


class DirectSqlite:
    """Statements run inline on the sqlite3 connection; speaks ``execute_query`` like a client.

    Only valid inside ``ImmediateSqliteClient.direct()``.
    """

    def __init__(self, client: ImmediateSqliteClient, connection: aiosqlite.Connection) -> None:
        self.capabilities = client.capabilities
        self._async = connection
        self._raw = connection._conn

    async def execute_query(
        self, query: str, values: Sequence[Any] | None = None
    ) -> tuple[int, list[Any]]:
        start = self._raw.total_changes
        try:
            rows = self._raw.execute(query, values or ()).fetchall()
        except sqlite3.IntegrityError as exc:
            raise IntegrityError(exc) from exc
        except sqlite3.OperationalError as exc:
            raise OperationalError(exc) from exc
        # As Tortoise counts: rows changed, else rows read.
        return (self._raw.total_changes - start) or len(rows), rows

    async def execute_query_dict(
        self, query: str, values: Sequence[Any] | None = None
    ) -> list[dict[str, Any]]:
        return [dict(row) for row in (await self.execute_query(query, values))[1]]

    async def execute_many(self, query: str, values: Sequence[Sequence[Any]]) -> None:
        self._raw.executemany(query, values)

    async def begin(self) -> None:
        """Take the write lock, waiting (off the event loop) for another process's."""
        try:
            await self._async.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc

    async def commit(self) -> None:
        """Commit in aiosqlite's thread: with synchronous=FULL, the fsync waits there."""
        await self._async.commit()

    async def rollback(self) -> None:
        if self._raw.in_transaction:
            self._raw.rollback()

    def run_inline(self, statement: str) -> None:
        """A statement that never waits (a savepoint's), run at once."""
        self._raw.execute(statement)


client_class = ImmediateSqliteClient
