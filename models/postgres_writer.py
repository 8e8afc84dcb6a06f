"""The ledger writer's own PostgreSQL connection, on a thread and event loop of its own.

A batch on PostgreSQL is a dozen statements per change, each a round trip that its
coroutine awaits. On the server's event loop each of those awaits also waits for every
other callback that became ready meanwhile (requests being parsed, events being sent to
websockets): under load a round trip cost a whole turn of a busy loop, and the batch
held its accounts' row locks for all of those turns, while the other processes' batches
waited for them. On a loop that runs nothing else, a round trip costs a round trip.

`WriterThread.run(batch)` runs `batch(connection)` on that loop and hands its result
back to the caller's loop. The connection speaks `execute_query` like Tortoise's clients,
so `services.sql` runs statements on it unchanged. Nothing else may touch it: the ORM
from inside a batch is refused (it would reach for the server loop's pool from the
wrong thread).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import asyncpg
from tortoise.backends.asyncpg.client import AsyncpgDBClient
from tortoise.exceptions import IntegrityError, OperationalError

R = TypeVar("R")
_WRITES = ("INSERT", "UPDATE", "DELETE")


class WriterConnection:
    """An asyncpg connection that answers like a Tortoise client (services/sql.py)."""

    capabilities = AsyncpgDBClient.capabilities

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def execute_query(
        self, query: str, values: Sequence[Any] | None = None
    ) -> tuple[int, list[Any]]:
        try:
            if query.lstrip()[:6].upper() in _WRITES:
                status = await self._connection.execute(query, *(values or ()))
                return _count(status), []
            rows = await self._connection.fetch(query, *(values or ()))
        except asyncpg.IntegrityConstraintViolationError as error:
            raise IntegrityError(error) from error
        except asyncpg.PostgresError as error:
            raise OperationalError(error) from error
        return len(rows), list(rows)

    async def execute_query_dict(
        self, query: str, values: Sequence[Any] | None = None
    ) -> list[dict[str, Any]]:
        try:
            rows = await self._connection.fetch(query, *(values or ()))
        except asyncpg.IntegrityConstraintViolationError as error:
            raise IntegrityError(error) from error
        except asyncpg.PostgresError as error:
            raise OperationalError(error) from error
        return [dict(row) for row in rows]

    async def execute_script(self, script: str) -> None:
        try:
            await self._connection.execute(script)
        except asyncpg.PostgresError as error:
            raise OperationalError(error) from error


def _count(status: str) -> int:
    """Rows changed, from a command's status ("UPDATE 3", "INSERT 0 1")."""
    try:
        return int(status.rsplit(" ", 1)[1])
    except (IndexError, ValueError):
        return 0


class WriterThread:
    """One thread, one event loop, one connection: started on first use, for a client."""

    def __init__(self, client: AsyncpgDBClient) -> None:
        self._client = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connection: asyncpg.Connection | None = None
        self._lock = threading.Lock()
        # Batches of one process take turns on the connection (one writer per process;
        # tests make several).
        self._turns: asyncio.Lock | None = None

    def is_current(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    async def run(self, batch: Callable[[WriterConnection], Coroutine[Any, Any, R]]) -> R:
        """`batch(connection)` on the writer's loop; its result, or its exception, here."""
        loop = self._started()
        future = asyncio.run_coroutine_threadsafe(self._call(batch), loop)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._disconnect(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="tally-ledger-writer", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _call(self, batch: Callable[[WriterConnection], Coroutine[Any, Any, R]]) -> R:
        if self._turns is None:
            self._turns = asyncio.Lock()
        async with self._turns:
            if self._connection is None or self._connection.is_closed():
                self._connection = await self._connect()
            try:
                return await batch(WriterConnection(self._connection))
            except BaseException:
                # A batch that failed or was cancelled mid-statement leaves the connection
                # in a state only a new one is sure to be free of.
                await self._disconnect()
                raise

    async def _connect(self) -> asyncpg.Connection:
        client = self._client
        return await asyncpg.connect(
            host=client.host,
            port=client.port,
            user=client.user,
            password=client.password,
            database=client.database,
            server_settings=client.server_settings or None,
        )

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.terminate()
