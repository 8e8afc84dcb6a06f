"""The floor of this stack: the SQL of one Tally send, without Tally, in a plain Starlette app.

One send's transaction, as services/ledger.py and services/messaging.py run it:

    BEGIN IMMEDIATE
    SELECT <every account column> FROM account WHERE id = ?
    SELECT <the inbox's number and access> FROM inbox ...
    INSERT INTO message (...) VALUES (...) RETURNING id
    INSERT INTO ledger_entry (...) VALUES (...) RETURNING id
    INSERT INTO usage_day / usage_month / usage_account_day ... ON CONFLICT DO UPDATE
    UPDATE account SET <the buckets, the month, the version> WHERE id = ?
    COMMIT

Endpoints (`uvicorn bench.floor:app`), each answering `{"ok": true, ...}`:

* `POST /send`: the floor of one fsync per send. One aiosqlite connection behind an
  asyncio.Lock, one statement per hop to aiosqlite's thread, as a hand-written endpoint
  would do it.
* `POST /send-batched`: what batching buys without Tally. Requests that arrive while a
  batch commits wait in a queue; the next batch runs them all in one transaction, each
  in a savepoint of its own (so that one could fail alone), its statements inline on the
  event loop's thread, and only BEGIN and the COMMIT that waits for the fsync go to
  aiosqlite's thread (as models/sqlite_engine.py's DirectSqlite does). Each request is
  answered once its batch has committed.
* `GET /ping`: no database; what the HTTP stack and the load client can do together.

`inline` runs the same transaction with sqlite3 in the calling process: no HTTP, no
thread hops (context only).

Configured by environment: BENCH_FLOOR_DB (file path), BENCH_FLOOR_IDS
(`account,inbox,member`) and BENCH_SQLITE_SYNCHRONOUS (the synchronous PRAGMA).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from models import Account
from models.db import SQLITE_DEFAULTS
from models.usage import FIGURES
from services.rollups import LEVELS

# Tortoise's SqliteClient adds these to the URL's PRAGMAs (tortoise/backends/sqlite/client.py).
PRAGMAS = {"journal_mode": "WAL", "journal_size_limit": "16384", "foreign_keys": "ON"}
PRAGMAS.update(SQLITE_DEFAULTS)
MAX_BATCH = 256  # as services/ledger_writer.py
FROM_NUMBER = "+14155550142"

_ACCOUNT_COLUMNS = list(Account._meta.fields_db_projection.values())
SELECT_ACCOUNT = f"SELECT {', '.join(_ACCOUNT_COLUMNS)} FROM account WHERE id = ?"
SELECT_INBOX = (
    "SELECT i.phone_number, i.owner_id, EXISTS (SELECT 1 FROM inbox_access a"
    " WHERE a.inbox_id = i.id AND a.member_id = ?) FROM inbox i WHERE i.id = ? AND i.account_id = ?"
)
INSERT_MESSAGE = (
    "INSERT INTO message (account_id, inbox_id, direction, from_number, to_number, body,"
    " encoding, segments, credits, status, sender_id, provider_message_id, created_at,"
    " refunded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
INSERT_ENTRY = (
    "INSERT INTO ledger_entry (account_id, kind, bucket, credits, balance_after, amount_cents,"
    " message_id, period_index, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
UPDATE_ACCOUNT = (
    "UPDATE account SET subscription_credits = ?, purchased_credits = ?, period_index = ?,"
    " next_period_at = ?, balance_version = ? WHERE id = ?"
)
UPSERT_USAGE = [
    (
        level.owner == "inbox_id",
        level.key == "month",
        f"INSERT INTO {level.table} ({level.columns})"
        f" VALUES ({', '.join('?' * (level.columns.count(',') + 1))})"
        f" ON CONFLICT ({level.owner}, {level.key}) DO UPDATE SET "
        + ", ".join(f"{c} = {level.table}.{c} + excluded.{c}" for c in FIGURES),
    )
    for level in LEVELS
]


@dataclass(frozen=True, slots=True)
class Ids:
    account: int
    inbox: int
    member: int

    @classmethod
    def from_env(cls) -> Ids:
        account, inbox, member = os.environ.get("BENCH_FLOOR_IDS", "1,1,1").split(",")
        return cls(int(account), int(inbox), int(member))


def pragmas() -> dict[str, str]:
    chosen = dict(PRAGMAS)
    if os.environ.get("BENCH_SQLITE_SYNCHRONOUS"):
        chosen["synchronous"] = os.environ["BENCH_SQLITE_SYNCHRONOUS"]
    return chosen


Statement = tuple[str, list[Any]]


def send_steps(ids: Ids, to: str, body: str) -> Generator[Statement, list[Any], int]:
    """One send's statements in order; each yield is answered with the statement's rows.

    A generator, so that the same send runs statement by statement through aiosqlite
    (`Floor.send`) or inline on a sqlite3 connection (`run_send`).
    """
    now = datetime.now(UTC)
    row = (yield SELECT_ACCOUNT, [ids.account])[0]
    account = dict(zip(_ACCOUNT_COLUMNS, row, strict=True))
    yield SELECT_INBOX, [ids.member, ids.inbox, ids.account]
    message = [ids.account, ids.inbox, "OUTBOUND", FROM_NUMBER, to, body, "GSM7", 1, 1,
               "QUEUED", ids.member, None, now, None]  # fmt: skip
    message_id = int((yield INSERT_MESSAGE, message)[0][0])
    subscription = int(account["subscription_credits"]) - 1
    total = subscription + int(account["purchased_credits"])
    yield INSERT_ENTRY, [ids.account, "OUTBOUND_MESSAGE", "SUBSCRIPTION", -1, total, None,
                         message_id, account["period_index"], now]  # fmt: skip
    # The bench account's zone is UTC, so its local day is the UTC date.
    for per_inbox, monthly, upsert in UPSERT_USAGE:
        owners = [ids.account, ids.inbox] if per_inbox else [ids.account]
        yield upsert, [*owners, now.date().replace(day=1) if monthly else now.date(), 1, 0, 1, 0]
    version = int(account["balance_version"]) + 1
    yield UPDATE_ACCOUNT, [subscription, account["purchased_credits"], account["period_index"],
                           account["next_period_at"], version, ids.account]  # fmt: skip
    return message_id


def run_send(db: sqlite3.Connection, ids: Ids, to: str, body: str) -> int:
    """One send's statements on a sqlite3 connection inside a transaction; the message id."""
    steps = send_steps(ids, to, body)
    statement = next(steps)
    try:
        while True:
            statement = steps.send(db.execute(*statement).fetchall())
    except StopIteration as done:
        return int(done.value)


class Floor:
    def __init__(self) -> None:
        self.db: aiosqlite.Connection | None = None
        self.lock = asyncio.Lock()
        self.ids = Ids.from_env()
        self.queue: deque[tuple[str, str, asyncio.Future[int]]] = deque()
        self.writer: asyncio.Task[None] | None = None

    async def open(self, path: str) -> None:
        # The batched floor runs statements on the loop's thread, as DirectSqlite does.
        self.db = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
        for name, value in pragmas().items():
            await (await self.db.execute(f"PRAGMA {name}={value}")).close()

    async def send(self, to: str, body: str) -> int:
        """One fsync per send: the whole transaction, statement by statement, through aiosqlite."""
        db = self.db
        assert db is not None
        async with self.lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                steps = send_steps(self.ids, to, body)
                statement = next(steps)
                try:
                    while True:
                        rows = list(await db.execute_fetchall(*statement))
                        statement = steps.send(rows)
                except StopIteration as done:
                    message_id = int(done.value)
                await db.commit()
            except BaseException:
                await db.rollback()
                raise
        return message_id

    async def send_batched(self, to: str, body: str) -> int:
        """The same transaction, committed with the others waiting: one fsync per batch."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.queue.append((to, body, future))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        db = self.db
        assert db is not None
        raw = db._conn  # statements inline, as DirectSqlite runs them
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(MAX_BATCH, len(self.queue)))]
            results: list[int | BaseException] = []
            try:
                await db.execute("BEGIN IMMEDIATE")
                for to, body, _ in batch:
                    raw.execute("SAVEPOINT send")
                    try:
                        results.append(run_send(raw, self.ids, to, body))
                    except Exception as error:
                        raw.execute("ROLLBACK TO SAVEPOINT send")
                        results.append(error)
                    raw.execute("RELEASE SAVEPOINT send")
                await db.commit()
            except BaseException as failure:
                if raw.in_transaction:
                    raw.rollback()
                results = [failure] * len(batch)
            for (_, _, future), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


floor = Floor()


async def send(request: Request) -> JSONResponse:
    data = await request.json()
    message_id = await floor.send(str(data["to"]), str(data["body"]))
    return JSONResponse({"ok": True, "messageId": str(message_id)})


async def send_batched(request: Request) -> JSONResponse:
    data = await request.json()
    message_id = await floor.send_batched(str(data["to"]), str(data["body"]))
    return JSONResponse({"ok": True, "messageId": str(message_id)})


async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await floor.open(os.environ["BENCH_FLOOR_DB"])
    try:
        yield
    finally:
        if floor.db is not None:
            await floor.db.close()


app = Starlette(
    routes=[
        Route("/send", send, methods=["POST"]),
        Route("/send-batched", send_batched, methods=["POST"]),
        Route("/ping", ping),
    ],
    lifespan=lifespan,
)


def inline(path: str, ids: Ids, to: str, body: str, seconds: float) -> list[int]:
    """The transaction with sqlite3 in this process for `seconds`: each one's latency (µs)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for name, value in pragmas().items():
            db.execute(f"PRAGMA {name}={value}")
        latencies = []
        end = time.perf_counter() + seconds
        while (began := time.perf_counter()) < end:
            db.execute("BEGIN IMMEDIATE")
            run_send(db, ids, to, body)
            db.execute("COMMIT")
            latencies.append(int((time.perf_counter() - began) * 1e6))
        return latencies
    finally:
        db.close()
