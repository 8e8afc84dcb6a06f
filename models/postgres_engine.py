"""Tortoise's asyncpg backend: transactions that survive being cancelled while they
start, and no reset round trip after a statement that ended normally.

Tortoise's transaction context takes a connection from the pool, then awaits
``BEGIN``. A task cancelled during that wait (a websocket client completing its
mutation, graphql-core cancelling a failed field's siblings, a shutdown) never reaches
``__aexit__``, which is what returns the connection: it stayed out of the pool, idle in
a transaction, and after as many such cancellations as the pool has connections every
statement of the process waited forever.

asyncpg's pool resets every connection it takes back (advisory locks, cursors, LISTEN,
settings): one more round trip after each statement outside a transaction, about 0.12 ms
of a 2.5 ms request here. Tally leaves none of that behind a statement that completed
(``SET LOCAL`` only inside transactions), so the pool skips it, and a connection whose
statement ended in an exception or a cancellation gets asyncpg's whole reset before it
goes back. That one matters: asyncpg sends a new statement's Parse and Describe without a
Sync, and a task cancelled before its Bind leaves the server waiting inside a
transaction that holds the statement's locks until something is sent. Skipping that
reset too once hung the test suite's next TRUNCATE; tests/services/test_cancellation.py
checks that a failed statement's connection is reset.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import (
    PoolConnectionWrapper,
    TransactionalDBClient,
    TransactionContext,
    TransactionContextPooled,
)
from tortoise.connection import get_connections

from models.postgres_writer import WriterThread


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


class ResetAfterFailure(PoolConnectionWrapper[asyncpg.Connection]):
    """A pooled connection for one statement, reset only if the statement did not end."""

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_type is None or self.connection is None:
            await super().__aexit__(exc_type, exc_val, exc_tb)
            return
        # Shielded: a second cancellation must not keep the connection out of the pool.
        await asyncio.shield(self._reset_and_release(self.connection))

    async def _reset_and_release(self, connection: asyncpg.Connection) -> None:
        # A reset that fails leaves a broken connection: the release then closes it.
        with contextlib.suppress(Exception):
            await connection.reset()
        await self.client._pool.release(connection)


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """The pool's reset of a connection whose statement completed (or whose transaction
    ended: asyncpg rolls back one left open before it calls this)."""


class CancellableAsyncpgClient(AsyncpgDBClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writer = WriterThread(self)

    def _in_transaction(self) -> TransactionContext:
        self._refuse_on_writer_thread()
        return CancellableTransactionContext(TransactionWrapper(self), self._pool_init_lock)

    def acquire_connection(self) -> ResetAfterFailure:
        self._refuse_on_writer_thread()
        return ResetAfterFailure(self, self._pool_init_lock)

    async def close(self) -> None:
        self.writer.close()
        await super().close()

    def _check_loop(self) -> bool:
        # Tortoise asks this before handing the client to a query: refuse there, before
        # it would reconnect the pool onto the writer's loop.
        self._refuse_on_writer_thread()
        return super()._check_loop()

    def _refuse_on_writer_thread(self) -> None:
        # The pool belongs to the server's loop; a ledger change runs on the writer's.
        if self.writer.is_current():
            raise RuntimeError(
                "an ORM query inside a ledger change: use the change's connection (tx.conn)"
            )

    async def create_pool(self, **kwargs: Any) -> asyncpg.Pool:
        return await asyncpg.create_pool(None, reset=_nothing_to_reset, **kwargs)


client_class = CancellableAsyncpgClient
