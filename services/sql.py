"""Raw statements on the ORM's connection, for the paths where Tortoise's query building
costs more than the statement: the rollups' upserts and sums, bulk loads, and the token
lookup every request makes.

A statement is written once with ``?`` placeholders; ``sql`` turns them into
``$1, $2…`` for asyncpg. Statements go through ``connection()``, so inside
``in_transaction()`` they commit or roll back with the ORM's.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection


def connection() -> BaseDBAsyncClient:
    """The default connection; inside ``in_transaction()``, that transaction's own.

    Tortoise keeps the transaction's client in a contextvar under the same alias, so
    statements sent through it commit or roll back with the ORM's.
    """
    return get_connection("default")


def is_postgres(conn: BaseDBAsyncClient) -> bool:
    return conn.capabilities.dialect == "postgres"


def sql(conn: BaseDBAsyncClient, text: str) -> str:
    """``text`` with its ``?`` placeholders in the connection's style (``$1, $2…`` for asyncpg)."""
    return _numbered(text) if is_postgres(conn) else text


# Cached: the same few statements run on every message and every request.
@cache
def _numbered(text: str) -> str:
    numbers = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(numbers)}", text)


async def run(conn: BaseDBAsyncClient, text: str, values: Sequence[Any]) -> None:
    await conn.execute_query(sql(conn, text), list(values))


async def fetch(conn: BaseDBAsyncClient, text: str, values: Sequence[Any]) -> list[Any]:
    """The rows of a query; each indexable by position on both backends."""
    return list((await conn.execute_query(sql(conn, text), list(values)))[1])


async def fetch_dicts(
    conn: BaseDBAsyncClient, text: str, values: Sequence[Any]
) -> list[dict[str, Any]]:
    """The rows of a query as dicts keyed by column name, on both backends."""
    return await conn.execute_query_dict(sql(conn, text), list(values))


async def affected(conn: BaseDBAsyncClient, text: str, values: Sequence[Any]) -> int:
    """The number of rows an UPDATE or DELETE changed, on both backends."""
    count, _ = await conn.execute_query(sql(conn, text), list(values))
    return int(count)


async def returning_id(conn: BaseDBAsyncClient, text: str, values: Sequence[Any]) -> int:
    """The id an ``INSERT … RETURNING id`` wrote (asyncpg's client drops an INSERT's rows
    from ``execute_query``, so this reads them as a query)."""
    rows = await conn.execute_query_dict(sql(conn, text), list(values))
    return int(rows[0]["id"])


async def fetch_written(conn: BaseDBAsyncClient, text: str, values: Sequence[Any]) -> list[Any]:
    """The rows an INSERT/UPDATE … RETURNING answers, each indexable by position.

    Tortoise's asyncpg client drops the rows of statements that start with a write
    keyword, so there these go through the dict path; name every returned column uniquely.
    """
    if not is_postgres(conn):
        return await fetch(conn, text, values)
    return [tuple(row.values()) for row in await fetch_dicts(conn, text, values)]
