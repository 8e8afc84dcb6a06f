"""Tortoise's asyncpg backend, with transactions that survive being cancelled while
they start.

Tortoise's transaction context takes a connection from the pool, then awaits
``BEGIN``. A task cancelled during that wait (a websocket client completing its
mutation, graphql-core cancelling a failed field's siblings, a shutdown) never reaches
``__aexit__``, which is what returns the connection: it stayed out of the pool, idle in
a transaction, and after as many such cancellations as the pool has connections every
statement of the process waited forever.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import (
    TransactionalDBClient,
    TransactionContext,
    TransactionContextPooled,
)
from tortoise.connection import get_connections


class CancellableTransactionContext(TransactionContextPooled):
    """Tortoise's context, returning the connection when the start did not complete."""

    async def __aenter__(self) -> TransactionalDBClient:
        await self.ensure_connection()
        pool = self.client._parent._pool
        connection = self.client._connection = await pool.acquire()
        self.token = get_connections().set(self.connection_name, self.client)
        # The BEGIN runs to its end in a task of its own: interrupted halfway, asyncpg
        # would leave its transaction object in an error state that only a warning in
        # the log clears.
        begin = asyncio.ensure_future(self.client.begin())
        try:
            await asyncio.shield(begin)
        except BaseException:
            get_connections().reset(self.token)
            # Shielded: a second cancellation must not keep the connection out either.
            await asyncio.shield(self._give_back(begin, pool, connection))
            raise
        return self.client

    async def _give_back(
        self, begin: asyncio.Future[None], pool: asyncpg.Pool, connection: asyncpg.Connection
    ) -> None:
        # A BEGIN that failed has nothing to roll back; the pool's own reset (ROLLBACK
        # included) covers whatever else is left.
        with contextlib.suppress(Exception):
            await begin
            await self.client.rollback()
        await pool.release(connection)


class CancellableAsyncpgClient(AsyncpgDBClient):
    def _in_transaction(self) -> TransactionContext:
        return CancellableTransactionContext(TransactionWrapper(self), self._pool_init_lock)


client_class = CancellableAsyncpgClient
