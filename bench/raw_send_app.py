"""The floor of this stack: a plain Starlette endpoint running the SQL of one Tally send.

`POST /send` with `{"to", "body"}` runs, on one aiosqlite connection behind an
asyncio.Lock (as Tortoise's SQLite client does), the statements Tortoise issues for
the transaction of `services.messaging._store`:

    BEGIN IMMEDIATE
    SELECT <every account column> FROM account WHERE id=? LIMIT ?
    INSERT INTO message (...) VALUES (...)
    INSERT INTO ledger_entry (...) VALUES (...)
    INSERT INTO usage_day ... ON CONFLICT DO UPDATE      -- when the usage rollups exist
    INSERT INTO usage_month ... ON CONFLICT DO UPDATE    -- (services/rollups.py)
    UPDATE account SET subscription_credits=?, ... WHERE id=?
    COMMIT

with the PRAGMAs of models/db.py (and Tortoise's own). No GraphQL, no ORM, no
authentication, none of the reads and writes a Tally send makes outside that
transaction. `GET /ping` answers without touching the database: it measures the
HTTP stack (uvicorn + Starlette) and the load client together.

Configured by environment: BENCH_RAW_DB (file path), BENCH_RAW_ACCOUNT,
BENCH_RAW_INBOX, BENCH_RAW_SENDER (ids of rows that exist), and BENCH_SQLITE_SYNCHRONOUS
to override the synchronous PRAGMA. Serve with
`uvicorn bench.raw_send_app:app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiosqlite
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from models.db import SQLITE_DEFAULTS

# Tortoise's SqliteClient adds these to the URL's PRAGMAs (tortoise/backends/sqlite/client.py).
PRAGMAS = {"journal_mode": "WAL", "journal_size_limit": "16384", "foreign_keys": "ON"}
PRAGMAS.update(SQLITE_DEFAULTS)
if os.environ.get("BENCH_SQLITE_SYNCHRONOUS"):  # bench/send.py --synchronous
    PRAGMAS["synchronous"] = os.environ["BENCH_SQLITE_SYNCHRONOUS"]

SELECT_ACCOUNT = (
    'SELECT "payment_last4","name","auto_recharge_enabled","auto_recharge_threshold",'
    '"created_at","timezone","auto_recharge_claimed_at","price_per_credit_cents",'
    '"auto_recharge_last_failure","next_period_at","payment_reference","subscription_credits",'
    '"auto_recharge_failures","auto_recharge_max_per_period","plan_name","period_index",'
    '"purchased_credits","monthly_credits","currency","id","payment_brand","balance_version",'
    '"week_start","auto_recharge_credits" FROM "account" WHERE "id"=? LIMIT ?'
)
INSERT_MESSAGE = (
    'INSERT INTO "message" ("direction","from_number","to_number","body","encoding","segments",'
    '"credits","status","provider_message_id","created_at","refunded_at","account_id",'
    '"inbox_id","sender_id") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)'
)
INSERT_LEDGER_ENTRY = (
    'INSERT INTO "ledger_entry" ("kind","bucket","credits","balance_after","amount_cents",'
    '"period_index","created_at","account_id","message_id") VALUES (?,?,?,?,?,?,?,?,?)'
)
UPDATE_ACCOUNT = (
    'UPDATE "account" SET "subscription_credits"=?,"purchased_credits"=?,"period_index"=?,'
    '"next_period_at"=?,"balance_version"=? WHERE "id"=?'
)
_FIGURES = ("segments_sent", "segments_received", "messages_sent", "messages_received")
UPSERT_USAGE = {
    table: (
        f"INSERT INTO {table} (account_id, inbox_id, {key}, {', '.join(_FIGURES)}) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (inbox_id, {key}) DO UPDATE SET "
        + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in _FIGURES)
    )
    for table, key in (("usage_day", "day"), ("usage_month", "month"))
}
FROM_NUMBER = "+14155550142"


def usage_tables(connection: sqlite3.Connection) -> list[str]:
    """The usage rollup tables of this database (none before their migration)."""
    names = {
        row[0]
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'usage_%'"
        )
    }
    return [table for table in UPSERT_USAGE if table in names]


class Floor:
    def __init__(self) -> None:
        self.db: aiosqlite.Connection | None = None
        self.lock = asyncio.Lock()
        self.account_id = int(os.environ.get("BENCH_RAW_ACCOUNT", "1"))
        self.inbox_id = int(os.environ.get("BENCH_RAW_INBOX", "1"))
        self.sender_id = int(os.environ.get("BENCH_RAW_SENDER", "1"))
        self.usage: list[str] = []

    async def open(self, path: str) -> None:
        self.db = await aiosqlite.connect(path, isolation_level=None)
        for name, value in PRAGMAS.items():
            await (await self.db.execute(f"PRAGMA {name}={value}")).close()
        with contextlib.closing(sqlite3.connect(path)) as probe:
            self.usage = usage_tables(probe)

    async def send(self, to: str, body: str) -> dict[str, object]:
        db = self.db
        assert db is not None
        now = datetime.now(UTC)
        stamp = now.isoformat(" ")
        # The bench account's zone is UTC, so its local day is the UTC date.
        when = {"usage_day": now.date().isoformat(), "usage_month": f"{now:%Y-%m}-01"}
        async with self.lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                rows = list(await db.execute_fetchall(SELECT_ACCOUNT, (self.account_id, 2)))
                account = dict(zip(ACCOUNT_COLUMNS, rows[0], strict=True))
                subscription = int(account["subscription_credits"]) - 1
                purchased = int(account["purchased_credits"])
                version = int(account["balance_version"]) + 1
                row = await db.execute_insert(
                    INSERT_MESSAGE,
                    ("OUTBOUND", FROM_NUMBER, to, body, "GSM7", 1, 1, "QUEUED", None, stamp,
                     None, self.account_id, self.inbox_id, self.sender_id),
                )  # fmt: skip
                assert row is not None
                message_id = row[0]
                await db.execute_insert(
                    INSERT_LEDGER_ENTRY,
                    ("OUTBOUND_MESSAGE", "SUBSCRIPTION", -1, subscription + purchased, None,
                     account["period_index"], stamp, self.account_id, message_id),
                )  # fmt: skip
                for table in self.usage:
                    await db.execute_fetchall(
                        UPSERT_USAGE[table],
                        (self.account_id, self.inbox_id, when[table], 1, 0, 1, 0),
                    )
                await db.execute_fetchall(
                    UPDATE_ACCOUNT,
                    (subscription, purchased, account["period_index"], account["next_period_at"],
                     version, self.account_id),
                )  # fmt: skip
                await db.commit()
            except BaseException:
                await db.rollback()
                raise
        return {"ok": True, "messageId": str(message_id), "total": subscription + purchased}


ACCOUNT_COLUMNS = [
    part.strip('"') for part in SELECT_ACCOUNT.split(" FROM ")[0][len("SELECT ") :].split(",")
]

floor = Floor()


async def send(request: Request) -> JSONResponse:
    data = await request.json()
    return JSONResponse(await floor.send(str(data["to"]), str(data["body"])))


async def ping(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await floor.open(os.environ["BENCH_RAW_DB"])
    try:
        yield
    finally:
        if floor.db is not None:
            await floor.db.close()


app = Starlette(
    routes=[Route("/send", send, methods=["POST"]), Route("/ping", ping)], lifespan=lifespan
)
