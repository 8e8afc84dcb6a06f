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
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import cast

from tortoise.backends.base.client import TransactionalDBClient, TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connections
from tortoise.exceptions import TransactionManagementError


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
        return CancellableTransactionContext(ImmediateTransactionWrapper(self), self._lock)


client_class = ImmediateSqliteClient
