"""The usage rollups (models/usage.py): kept equal to the account's messages, and read.

Per inbox and local day, per inbox and month, and per account and day: the segments and
the number of the messages that were not refunded, sent and received, in the account's
current time zone. The rows move only here, and only inside a transaction that holds the
account's row lock (``services.ledger.lock_account``):

* ``count_message``: + a message when it is stored, − when it is refunded, in the same
  transaction as its ledger entries;
* ``rebuild_usage``: after a time zone change, in the transaction that changes the zone.

Each writer reads the zone from the locked account row, so no row is ever keyed in a zone
that a concurrent ``updateAccount`` is replacing. See docs/usage-rollups.md.

Raw SQL (services/sql.py), because Tortoise has no upsert that adds to the existing row.
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.backends.base.client import BaseDBAsyncClient

from models import Account, Message
from models.enums import Direction
from models.usage import FIGURES
from services.calendar import Granularity, WeekStart, local_day, local_days
from services.sql import connection, fetch, is_postgres, run, sql

# Messages read per query while regrouping in Python: bounded memory for any account.
CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class Level:
    """One rollup table: a row per ``owner`` (inbox or account) and date column ``key``."""

    table: str
    owner: str
    key: str

    @property
    def owners(self) -> str:
        return "account_id, inbox_id" if self.owner == "inbox_id" else "account_id"

    @property
    def columns(self) -> str:
        return f"{self.owners}, {self.key}, {', '.join(FIGURES)}"


DAYS = Level("usage_day", "inbox_id", "day")
MONTHS = Level("usage_month", "inbox_id", "month")
ACCOUNT_DAYS = Level("usage_account_day", "account_id", "day")
LEVELS = (DAYS, MONTHS, ACCOUNT_DAYS)

_SUMS = ", ".join(f"SUM({c})" for c in FIGURES)


def _upsert_sql(level: Level) -> str:
    marks = ", ".join("?" * (level.columns.count(",") + 1))
    add = ", ".join(f"{c} = {level.table}.{c} + excluded.{c}" for c in FIGURES)
    return (
        f"INSERT INTO {level.table} ({level.columns}) VALUES ({marks}) "
        f"ON CONFLICT ({level.owner}, {level.key}) DO UPDATE SET {add}"
    )


_UPSERT = {level: _upsert_sql(level) for level in LEVELS}
# PostgreSQL: the three upserts as one statement (data-modifying CTEs; SQLite has none).
_UPSERT_ALL = (
    f"WITH days AS ({_UPSERT[DAYS]}), months AS ({_UPSERT[MONTHS]}) {_UPSERT[ACCOUNT_DAYS]}"
)


def _owners(level: Level, account_id: int, inbox_id: int) -> list[int]:
    return [account_id, inbox_id] if level.owner == "inbox_id" else [account_id]


def _key(level: Level, day: date) -> date:
    return day.replace(day=1) if level is MONTHS else day


# A refund can empty a row: drop it, so that a row exists only while it counts a message.
_DROP_EMPTY = {
    level: f"DELETE FROM {level.table} WHERE {level.owner} = ? AND {level.key} = ? "
    "AND messages_sent = 0 AND messages_received = 0"
    for level in LEVELS
}
_OUT = "direction = 'OUTBOUND'"
# PostgreSQL regroups the messages in one statement (its zone database is the server's).
_DAYS_FROM_MESSAGES = f"""
INSERT INTO usage_day ({DAYS.columns})
SELECT account_id, inbox_id, (created_at AT TIME ZONE ?::text)::date,
       SUM(CASE WHEN {_OUT} THEN segments ELSE 0 END),
       SUM(CASE WHEN {_OUT} THEN 0 ELSE segments END),
       SUM(CASE WHEN {_OUT} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {_OUT} THEN 0 ELSE 1 END)
FROM message WHERE account_id = ? AND refunded_at IS NULL
GROUP BY 1, 2, 3
"""
# Keyset pages over the index (account_id, created_at, id): each page starts where the
# last one ended, so the whole rebuild is one pass however many accounts share the table.
_PAGE = """
SELECT id, inbox_id, direction, created_at, segments FROM message
WHERE account_id = ? AND refunded_at IS NULL {after} ORDER BY created_at, id LIMIT ?
"""


def _as_datetime(value: datetime | str) -> datetime:
    """A TIMESTAMP column's value: SQLite hands back ISO text, asyncpg a datetime."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def as_date(value: date | str) -> date:
    """A DATE column's value: SQLite hands back ISO text, asyncpg a date."""
    return date.fromisoformat(value) if isinstance(value, str) else value


_OUTBOUND = Direction.OUTBOUND.value


def _columns(direction: str) -> tuple[int, int]:
    """Where a message of ``direction`` counts among the figures: (segments, messages)."""
    return (0, 2) if direction == _OUTBOUND else (1, 3)


def _figures(direction: str, segments: int, messages: int) -> list[int]:
    """The four figure columns of ``messages`` messages with ``segments`` segments."""
    figures = [0, 0, 0, 0]
    segments_at, messages_at = _columns(direction)
    figures[segments_at], figures[messages_at] = segments, messages
    return figures


# Writing


async def count_message(
    conn: BaseDBAsyncClient, account: Account, message: Message, *, sign: int
) -> None:
    """Add (``sign=1``) or take back (``sign=-1``) one message and its segments.

    Must run on ``conn``, in the change that locked ``account``: the day is the message's
    in the zone read from that locked row.
    """
    day = local_day(message.created_at, ZoneInfo(account.timezone))
    figures = _figures(message.direction.value, sign * message.segments, sign)
    rows = [
        [*_owners(level, account.id, message.inbox_id), _key(level, day), *figures]
        for level in LEVELS
    ]
    if is_postgres(conn):
        # One round trip for the three tables, where each statement is one.
        await run(conn, _UPSERT_ALL, [value for row in rows for value in row])
    else:
        for level, row in zip(LEVELS, rows, strict=True):
            await run(conn, _UPSERT[level], row)
    if sign < 0:
        for level, row in zip(LEVELS, rows, strict=True):
            await run(conn, _DROP_EMPTY[level], row[-6:-4])  # its owner and key


async def rebuild_usage(*, account_id: int, timezone: str) -> None:
    """Regroup every message of the account that was not refunded by local day in ``timezone``.

    One pass over the account's messages. Must run in the transaction that locked the
    account and stores ``timezone`` on it.
    """
    conn = connection()
    if is_postgres(conn) and await _postgres_knows(conn, timezone):
        await _clear(conn, account_id)
        await run(conn, _DAYS_FROM_MESSAGES, [timezone, account_id])
        await _derive_months_and_account_days(conn, account_id)
    else:
        totals = await _regroup(conn, account_id, ZoneInfo(timezone))
        await replace_usage(account_id=account_id, totals=totals)


def tally_message(
    totals: dict[tuple[int, date], list[int]],
    *,
    inbox_id: int,
    direction: str,
    day: date,
    segments: int,
) -> None:
    """Add one message of local ``day`` to (inbox, local day) totals of the four figures."""
    sums = totals.get((inbox_id, day))
    if sums is None:
        sums = totals[inbox_id, day] = [0, 0, 0, 0]
    segments_at, messages_at = _columns(direction)
    sums[segments_at] += segments
    sums[messages_at] += 1


async def replace_usage(*, account_id: int, totals: dict[tuple[int, date], list[int]]) -> None:
    """Replace the account's rollups with (inbox, local day) totals; under the account lock."""
    conn = connection()
    await _clear(conn, account_id)
    rows = [[account_id, inbox_id, day, *sums] for (inbox_id, day), sums in totals.items()]
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        insert = f"INSERT INTO usage_day ({DAYS.columns}) VALUES ({marks})"
        await conn.execute_many(sql(conn, insert), rows)
    await _derive_months_and_account_days(conn, account_id)


async def add_usage(*, account_id: int, totals: dict[tuple[int, date], list[int]]) -> None:
    """Add (inbox, local day) totals to the account's rollups (imported history); in the
    transaction that stores their messages, under the account lock."""
    conn = connection()
    months: dict[tuple[int, date], list[int]] = {}
    days: dict[date, list[int]] = {}
    for (inbox_id, day), sums in totals.items():
        _add(months.setdefault((inbox_id, day.replace(day=1)), [0, 0, 0, 0]), sums)
        _add(days.setdefault(day, [0, 0, 0, 0]), sums)
    rows = {
        DAYS: [[account_id, inbox_id, day, *sums] for (inbox_id, day), sums in totals.items()],
        MONTHS: [
            [account_id, inbox_id, month, *sums] for (inbox_id, month), sums in months.items()
        ],
        ACCOUNT_DAYS: [[account_id, day, *sums] for day, sums in days.items()],
    }
    for level, values in rows.items():
        if values:
            await conn.execute_many(sql(conn, _UPSERT[level]), values)


def _add(cell: list[int], sums: list[int]) -> None:
    for column, value in enumerate(sums):
        cell[column] += value


async def _clear(conn: BaseDBAsyncClient, account_id: int) -> None:
    for level in LEVELS:
        await run(conn, f"DELETE FROM {level.table} WHERE account_id = ?", [account_id])


async def _derive_months_and_account_days(conn: BaseDBAsyncClient, account_id: int) -> None:
    month = (
        "date_trunc('month', day::timestamp)::date"
        if is_postgres(conn)
        else "date(day, 'start of month')"
    )
    for level, key in ((MONTHS, month), (ACCOUNT_DAYS, "day")):
        query = (
            f"INSERT INTO {level.table} ({level.columns}) SELECT {level.owners}, {key}, {_SUMS} "
            f"FROM usage_day WHERE account_id = ? GROUP BY {level.owners}, {key}"
        )
        await run(conn, query, [account_id])


async def _postgres_knows(conn: BaseDBAsyncClient, timezone: str) -> bool:
    """Whether the server's zone database has ``timezone`` (a zone newer than it may not)."""
    rows = await fetch(conn, "SELECT 1 FROM pg_timezone_names WHERE name = ?", [timezone])
    return bool(rows)


async def _regroup(
    conn: BaseDBAsyncClient, account_id: int, zone: ZoneInfo
) -> dict[tuple[int, date], list[int]]:
    """(inbox, local day) -> the four figures, from the messages read page by page."""
    totals: dict[tuple[int, date], list[int]] = {}
    page = await fetch(conn, _PAGE.format(after=""), [account_id, CHUNK])
    while page:
        days = local_days((_as_datetime(row[3]) for row in page), zone)
        for (_id, inbox_id, direction, _, segments), day in zip(page, days, strict=True):
            tally_message(
                totals, inbox_id=inbox_id, direction=direction, day=day, segments=segments
            )
        if len(page) < CHUNK:
            break
        # Hand back the values exactly as read: the next page starts right after them.
        last = page[-1]
        after = _PAGE.format(after="AND (created_at, id) > (?, ?)")
        page = await fetch(conn, after, [account_id, last[3], last[0], CHUNK])
    return totals


# Reading


async def first_usage_day(account_id: int, inbox_ids: tuple[int, ...] | None) -> date | None:
    """The first local day with usage in the inboxes (None: the whole account), if any."""
    table = ACCOUNT_DAYS.table if inbox_ids is None else DAYS.table
    where, values = _scope(account_id, inbox_ids)
    # Every row counts a message: a refund that empties a row deletes it.
    query = f"SELECT day FROM {table} WHERE {where} ORDER BY day LIMIT 1"
    rows = await fetch(connection(), query, values)
    return as_date(rows[0][0]) if rows else None


async def account_pace(account_id: int, start: date, end: date) -> tuple[date | None, int]:
    """The account's first local day with usage (None: none), and its segments over
    ``[start, end]``: what a forecast needs, in one round trip."""
    rows = await fetch(connection(), _PACE, [account_id, account_id, start, end])
    first, segments = rows[0]
    return (None if first is None else as_date(first)), int(segments or 0)


_PACE = (
    f"SELECT (SELECT MIN(day) FROM {ACCOUNT_DAYS.table} WHERE account_id = ?), "
    f"(SELECT SUM(segments_sent + segments_received) FROM {ACCOUNT_DAYS.table} "
    "WHERE account_id = ? AND day BETWEEN ? AND ?)"
)


async def usage_sums(
    account_id: int,
    inbox_ids: tuple[int, ...] | None,
    start: date,
    end: date,
    *,
    granularity: Granularity,
    week_start: WeekStart,
    by_inbox: bool = False,
    previous: Span | None = None,
) -> list[Sequence[Any]]:
    """Rows (a day, inbox or None, the four figures) that add up to ``[start, end]``.

    Over ``inbox_ids`` (None: every inbox of the account), summed per inbox when
    ``by_inbox``. No row straddles two buckets: each sums one day, or days of one week or
    month (the day is then one of them). MONTH and ALL read the months wholly inside the
    range from the month rollup and only the clipped ends (at most ~60 days) by day.

    With ``previous`` (a range before ``start``), the same statement also sums that range,
    whole, in at most three more rows per inbox, dated within it (so before ``start``):
    the comparison costs no second round trip and no pass over the report's buckets.
    """
    conn = connection()
    where, scope = _scope(account_id, inbox_ids)
    # The account's own days when no inbox detail is needed: one row a day to read.
    days = ACCOUNT_DAYS.table if inbox_ids is None and not by_inbox else DAYS.table
    inbox, per_inbox = ("inbox_id", ", inbox_id") if by_inbox else ("NULL", "")
    if granularity in (Granularity.MONTH, Granularity.ALL):
        months, edges = split_months(start, end)
        group = f"GROUP BY month{per_inbox}"
        parts = [(f"month, {inbox}", MONTHS.table, "month", span, group) for span in months]
        # Each edge lies within one month. Without GROUP BY an aggregate of no rows is
        # still one row (of NULLs): HAVING drops it.
        group = "GROUP BY inbox_id" if by_inbox else "HAVING COUNT(*) > 0"
        parts += [(f"MIN(day), {inbox}", days, "day", span, group) for span in edges]
    elif by_inbox and granularity is Granularity.WEEK:
        # Summed by week in SQL: a seventh of the rows to carry into Python.
        group = f"GROUP BY inbox_id, {_week_of_day(conn, week_start)}"
        parts = [("MIN(day), inbox_id", days, "day", (start, end), group)]
    else:
        # Inbox by inbox, day by day: the order of the covering index, so nothing is sorted.
        group = "GROUP BY inbox_id, day" if by_inbox else "GROUP BY day"
        parts = [(f"day, {inbox}", days, "day", (start, end), group)]
    if previous is not None:
        parts += _whole_range_parts(previous, days, inbox, by_inbox)
    # One statement per span, never OR-ed ranges: each then reads only its index range.
    queries = [
        f"SELECT {select}, {_SUMS} FROM {table} WHERE {where} AND {column} BETWEEN ? AND ? {group}"
        for select, table, column, _, group in parts
    ]
    values = [value for *_, span, _ in parts for value in (*scope, *span)]
    return await fetch(conn, " UNION ALL ".join(queries), values)


def _whole_range_parts(
    span: Span, days: str, inbox: str, by_inbox: bool
) -> list[tuple[str, str, str, Span, str]]:
    """The parts that sum ``span`` whole: its months from the month rollup, the rest by day."""
    months, edges = split_months(*span)
    # Without GROUP BY an aggregate of no rows is still one row (of NULLs): HAVING drops it.
    group = "GROUP BY inbox_id" if by_inbox else "HAVING COUNT(*) > 0"
    parts = [(f"MIN(month), {inbox}", MONTHS.table, "month", whole, group) for whole in months]
    parts += [(f"MIN(day), {inbox}", days, "day", edge, group) for edge in edges]
    return parts


def _scope(account_id: int, inbox_ids: tuple[int, ...] | None) -> tuple[str, list[object]]:
    """The WHERE clause of the account, or of some of its inboxes (the indexes' prefix)."""
    if inbox_ids is None:
        return "account_id = ?", [account_id]
    marks = ", ".join("?" * len(inbox_ids))
    return f"account_id = ? AND inbox_id IN ({marks})", [account_id, *inbox_ids]


# date.weekday() of a week's first day.
_FIRST_WEEKDAY = {WeekStart.MONDAY: 0, WeekStart.SUNDAY: 6}


def _week_of_day(conn: BaseDBAsyncClient, week_start: WeekStart) -> str:
    """SQL numbering ``day``'s week: equal for exactly the days of one week.

    Days since 0001-01-01 (a Monday), shifted by ``7 - first weekday`` so that each week
    starts on a multiple of 7 and stays positive, whatever the dialect's integer division.
    """
    shift = 7 - _FIRST_WEEKDAY[week_start]
    if is_postgres(conn):
        return f"((day - DATE '0001-01-01' + {shift}) / 7)"
    # julianday() of a date is a whole number and a half, so this is an exact integer.
    return f"CAST((julianday(day) - 1721425.5 + {shift}) / 7 AS INTEGER)"


Span = tuple[date, date]


def split_months(start: date, end: date) -> tuple[list[Span], list[Span]]:
    """``[start, end]`` as its whole months (first days: one span or none) and the other days."""
    first_month, last_month = start.replace(day=1), end.replace(day=1)
    if first_month == last_month:
        whole = start.day == 1 and end == _last_day(end)
        return ([(start, start)], []) if whole else ([], [(start, end)])
    # Different months, so neither step below can leave the supported dates.
    edges = []
    if start.day != 1:
        edges.append((start, _last_day(start)))
        first_month = _last_day(start) + timedelta(days=1)
    if end != _last_day(end):
        edges.append((last_month, end))
        last_month = (last_month - timedelta(days=1)).replace(day=1)
    months = [(first_month, last_month)] if first_month <= last_month else []
    return months, edges


def _last_day(day: date) -> date:
    return day.replace(day=monthrange(day.year, day.month)[1])
