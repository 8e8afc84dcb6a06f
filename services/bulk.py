"""Rows streamed into a table inside the current transaction, written while they are made.

For generators of a million rows (services/seeding.py), so that building the rows in
Python overlaps the database's work instead of preceding it:

* PostgreSQL: one binary COPY fed by the generator, on the transaction's own asyncpg
  connection. asyncpg sends a buffer whenever about 512 KiB of rows are encoded and
  waits only when the socket is full, so the server inserts while the next rows are made.
* SQLite: ``executemany`` of ``CHUNK`` rows at a time, the rows passed as they are.

Either way the rows commit or roll back with the transaction; a generator that raises
aborts the statement in flight and the exception propagates.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, cast

from tortoise.backends.base.client import BaseDBAsyncClient

from services import sql

Row = tuple[Any, ...]
CHUNK = 20_000


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
        await raw.copy_records_to_table(table, records=_streamed(rows), columns=list(columns))


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
