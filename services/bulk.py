"""Rows streamed into a table inside the current transaction, written while they are made.

For generators of a million rows (services/seeding.py), so that building the rows in
Python overlaps the database's work instead of preceding it:

* PostgreSQL: one binary COPY fed by the generator, on the transaction's own asyncpg
  connection. asyncpg sends a buffer whenever about 512 KiB of rows are encoded and
  waits only when the socket is full, so the server inserts while the next rows are made.
* SQLite: ``executemany`` of ``CHUNK`` rows at a time, the rows passed as they are.

Either way the rows commit or roll back with the transaction; a generator that raises
aborts the statement in flight and the exception propagates.

``loading`` wraps a load. On PostgreSQL, as a superuser, it turns off the per-row
foreign-key triggers for the transaction (``session_replication_role = replica``) and
checks every foreign key of the loaded tables once at the end, one anti-join each over
the account's rows: the triggers were two thirds of a million-message seed's time
(docs/benchmarks.md). A reference to nothing raises ``DanglingReference`` and the
transaction rolls back, as a trigger would have made it. Elsewhere (SQLite, or a
PostgreSQL role that may not set it) rows are checked as they are written.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from services import sql

Row = tuple[Any, ...]
CHUNK = 20_000

# Each single-column foreign key of the given tables: (name, table, column, parent, key).
_FOREIGN_KEYS = """
SELECT c.conname, c.conrelid::regclass::text, child.attname,
       c.confrelid::regclass::text, parent.attname, cardinality(c.conkey)
FROM pg_constraint c
JOIN pg_attribute child ON child.attrelid = c.conrelid AND child.attnum = c.conkey[1]
JOIN pg_attribute parent ON parent.attrelid = c.confrelid AND parent.attnum = c.confkey[1]
WHERE c.contype = 'f' AND c.conrelid::regclass::text = ANY(?::text[])
ORDER BY 1
"""


class DanglingReference(Exception):
    """Loaded rows refer to rows that do not exist."""


@asynccontextmanager
async def loading(*, account_id: int, tables: Sequence[str]) -> AsyncIterator[None]:
    """A bulk load of the account's rows into `tables`, inside the current transaction."""
    conn = sql.connection()
    if not sql.is_postgres(conn) or not await _may_skip_triggers(conn):
        yield
        return
    await sql.run(conn, "SET LOCAL session_replication_role = replica", [])
    yield
    await sql.run(conn, "SET LOCAL session_replication_role = origin", [])
    await _check_foreign_keys(conn, account_id, tables)


async def _may_skip_triggers(conn: BaseDBAsyncClient) -> bool:
    rows = await sql.fetch(conn, "SELECT current_setting('is_superuser') = 'on'", [])
    return bool(rows[0][0])


async def _check_foreign_keys(
    conn: BaseDBAsyncClient, account_id: int, tables: Sequence[str]
) -> None:
    for name, table, column, parent, key, width in await sql.fetch(
        conn, _FOREIGN_KEYS, [list(tables)]
    ):
        if width != 1:
            raise DanglingReference(f"{name}: only single-column foreign keys are checked")
        dangling = await sql.fetch(
            conn,
            f'SELECT c."{column}" FROM {table} c WHERE c.account_id = ? '
            f'AND c."{column}" IS NOT NULL AND NOT EXISTS '
            f'(SELECT 1 FROM {parent} p WHERE p."{key}" = c."{column}") LIMIT 1',
            [account_id],
        )
        if dangling:
            raise DanglingReference(f"{table}.{column} = {dangling[0][0]} refers to no {parent}")


async def insert_rows(table: str, columns: Sequence[str], rows: Iterable[Row]) -> None:
    """Insert `rows` (tuples in the order of `columns`) into `table`; inside a transaction."""
    conn = sql.connection()
    if sql.is_postgres(conn):
        await _copy(conn, table, columns, rows)
    else:
        await _insert_chunks(conn, _insert_sql(table, columns), rows)


async def _copy(
    conn: BaseDBAsyncClient, table: str, columns: Sequence[str], rows: Iterable[Row]
) -> None:
    # The transaction's client hands out its own connection (under its lock), so the
    # COPY is part of the transaction.
    async with conn.acquire_connection() as raw:
        try:
            await raw.copy_records_to_table(table, records=_streamed(rows), columns=list(columns))
        except asyncpg.IntegrityConstraintViolationError as error:
            # As Tortoise reports it for every other statement, on either database.
            raise IntegrityError(error) from error


async def _streamed(rows: Iterable[Row]) -> AsyncIterator[Row]:
    # An async iterable is what makes asyncpg send each buffer as soon as it is full
    # rather than after the last row has been made.
    for row in rows:
        yield row


async def _insert_chunks(conn: BaseDBAsyncClient, query: str, rows: Iterable[Row]) -> None:
    # One chunk at a time: a chunk being written in aiosqlite's thread while the next is
    # made here was no faster, as that thread needs the GIL again for every row it binds.
    for chunk in _chunks(rows):
        # sqlite3 binds any sequence; Tortoise's annotation asks for lists.
        await conn.execute_many(query, cast(list[list[Any]], chunk))


def _chunks(rows: Iterable[Row]) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, CHUNK)):
        yield chunk


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(f'"{column}"' for column in columns)
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({names}) VALUES ({marks})"
