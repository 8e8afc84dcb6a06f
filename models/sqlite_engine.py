"""Tortoise's SQLite backend, with write transactions that take the lock up front.

Tortoise opens transactions with a deferred ``BEGIN``; a transaction that reads
and then writes can then fail at once with "database is locked" when another
process (the CLI, a second server) holds the write lock, whatever the busy
timeout. ``BEGIN IMMEDIATE`` takes the write lock at the start and waits up to
``busy_timeout`` for it instead.
"""

from __future__ import annotations

import sqlite3

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.exceptions import TransactionManagementError


class ImmediateTransactionWrapper(SqliteTransactionWrapper):
    async def begin(self) -> None:
        # The connection is in autocommit mode between transactions, so unlike Tortoise's
        # own begin() there is nothing to commit first: one thread hop fewer per write.
        try:
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class ImmediateSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return SqliteTransactionContext(ImmediateTransactionWrapper(self), self._lock)


client_class = ImmediateSqliteClient
