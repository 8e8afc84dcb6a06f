"""The same reports from a plain GROUP BY over the message table (what Tally avoids).

What a developer without rollups would write: ONE aggregate statement over the account's
messages that were not refunded, grouped by the local day (or local month) in the account's
zone, with the four sums in the same pass:

    SUM(segments) FILTER (WHERE direction = 'OUTBOUND')   -- segments sent
    SUM(segments) FILTER (WHERE direction = 'INBOUND')    -- segments received
    COUNT(*)      FILTER (WHERE direction = 'OUTBOUND')   -- messages sent
    COUNT(*)      FILTER (WHERE direction = 'INBOUND')    -- messages received

and Python zero-fills the buckets and adds the totals up from the same rows.

* The local day. PostgreSQL: ``(created_at AT TIME ZONE $zone)::date`` (and ``date_trunc
  ('month', …)`` for months). SQLite has no time zones, so the UTC offsets of the zone
  over the range are worked out in Python first (``zoneinfo``, a handful of DST
  transitions) and put into the statement as a constant expression:
  ``date(created_at, CASE WHEN created_at < '2025-03-09 07:00:00+00:00' THEN '-300
  minutes' WHEN … END)``: text comparisons work because SQLite stores Tortoise's
  timestamps as ``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00``.
* A range (case a) becomes ``created_at >= <local start midnight, in UTC> AND created_at <
  <the midnight after the local end, in UTC>``, which the index (account_id, created_at,
  id) serves. All time: a ``SELECT MIN(created_at)`` (one index probe) gives the first
  local day, which is the report's start; the end is today in the zone.
* Groups by MEMBER (case b): the statement groups by (local month, inbox_id); Python adds
  each inbox's rows to its owner's group (personal inboxes, from ``inbox``) and every row
  to the totals, and lists every member of the account (``member``), zeros included.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bench.usage_reports import (
    ZERO,
    Case,
    Figures,
    Shape,
    add,
    series_of,
    six,
    spans,
    total_of,
)

# The last main statement of each case, with its values: for --show-sql / EXPLAIN.
STATEMENTS: dict[str, tuple[str, list[Any]]] = {}

SUMS = (
    "SUM(segments) FILTER (WHERE direction = 'OUTBOUND'), "
    "SUM(segments) FILTER (WHERE direction = 'INBOUND'), "
    "COUNT(*) FILTER (WHERE direction = 'OUTBOUND'), "
    "COUNT(*) FILTER (WHERE direction = 'INBOUND')"
)


def midnight_utc(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), zone).astimezone(UTC)


def sqlite_text(moment: datetime) -> str:
    """A UTC instant as SQLite holds Tortoise's timestamps: '2025-03-09 07:00:00+00:00'."""
    return moment.astimezone(UTC).isoformat(" ")


def offset_case(zone: ZoneInfo, since: datetime, until: datetime) -> str:
    """SQLite modifier: the zone's UTC offset at ``created_at`` for instants in [since, until].

    The transitions are found in Python: day by day, then to the quarter hour within a day
    whose offset changed (every zone changes offset on a quarter hour).
    """

    def offset_at(moment: datetime) -> int:
        value = moment.astimezone(zone).utcoffset()
        assert value is not None
        return int(value.total_seconds() // 60)

    moment = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    current = offset_at(moment)
    branches = []
    while moment <= until:
        following = moment + timedelta(days=1)
        if offset_at(following) != current:
            step = moment
            while offset_at(step) == current:
                step += timedelta(minutes=15)
            branches.append((sqlite_text(step), current))
            current = offset_at(step)
        moment = following
    if not branches:
        return f"'{current:+d} minutes'"
    whens = " ".join(f"WHEN created_at < '{at}' THEN '{m:+d} minutes'" for at, m in branches)
    return f"CASE {whens} ELSE '{current:+d} minutes' END"


def _range(case: Case, today: date) -> tuple[date, date] | None:
    if case.last_days is None:
        return None
    return today - timedelta(days=case.last_days - 1), today


def _as_day(value: date | str) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _shape(
    case: Case,
    start: date,
    end: date,
    rows: list[Any],
    members: list[int],
    owner_of: dict[int, int],
) -> Shape:
    """Rows are (bucket key, inbox_id or None, 4 sums); builds totals, series and groups."""
    buckets = spans(start, end, case.granularity)
    account: dict[date, Figures] = {}
    by_member: dict[int, dict[date, Figures]] = {m: {} for m in members}
    for key, inbox_id, s_sent, s_received, sent, received in rows:
        day = _as_day(key)
        figures = six(s_sent or 0, s_received or 0, sent, received)
        account[day] = add(account.get(day, ZERO), figures)
        if case.group_by == "MEMBER":
            owner = owner_of.get(inbox_id)
            if owner is not None:
                sums = by_member[owner]
                sums[day] = add(sums.get(day, ZERO), figures)
    series = series_of(buckets, account, case.granularity)
    groups = []
    for member in members:
        member_series = series_of(buckets, by_member[member], case.granularity)
        groups.append(("member", str(member), total_of(member_series), member_series))
    return Shape(
        start=start.isoformat(),
        end=end.isoformat(),
        totals=total_of(series),
        series=series,
        groups=tuple(groups),
    )


# --- SQLite ----------------------------------------------------------------------------


def sqlite_report(
    db: sqlite3.Connection, account_id: int, case: Case, zone: ZoneInfo, today: date
) -> Shape:
    days = _range(case, today)
    now = datetime.now(UTC)
    where = "account_id = ? AND refunded_at IS NULL"
    values: list[Any] = [account_id]
    if days is None:
        (first,) = db.execute(
            "SELECT MIN(created_at) FROM message WHERE account_id = ? AND refunded_at IS NULL",
            (account_id,),
        ).fetchone()
        since = datetime.fromisoformat(first) if first else now
        start = min(since.astimezone(zone).date(), today)
        end = today
    else:
        start, end = days
        since = midnight_utc(start, zone)
        where += " AND created_at >= ? AND created_at < ?"
        values += [sqlite_text(since), sqlite_text(midnight_utc(end + timedelta(days=1), zone))]
    offset = offset_case(zone, since, max(now, midnight_utc(end + timedelta(days=1), zone)))
    if case.granularity == "DAY":
        key, per_inbox = f"date(created_at, {offset})", "NULL"
        group = "GROUP BY 1"
    else:
        key, per_inbox = f"date(created_at, {offset}, 'start of month')", "inbox_id"
        group = "GROUP BY 1, 2"
    query = f"SELECT {key}, {per_inbox}, {SUMS} FROM message WHERE {where} {group}"
    STATEMENTS[case.key] = (query, values)
    rows = db.execute(query, values).fetchall()
    members: list[int] = []
    owner_of: dict[int, int] = {}
    if case.group_by == "MEMBER":
        members = [
            r[0]
            for r in db.execute(
                "SELECT id FROM member WHERE account_id = ? ORDER BY id", (account_id,)
            )
        ]
        owner_of = dict(
            db.execute(
                "SELECT id, owner_id FROM inbox WHERE account_id = ? AND kind = 'PERSONAL'",
                (account_id,),
            ).fetchall()
        )
    return _shape(case, start, end, rows, members, owner_of)


# --- PostgreSQL ------------------------------------------------------------------------


async def postgres_report(
    conn: Any, account_id: int, case: Case, zone: ZoneInfo, today: date
) -> Shape:
    days = _range(case, today)
    where = "account_id = $1 AND refunded_at IS NULL"
    values: list[Any] = [account_id, zone.key]
    if days is None:
        first = await conn.fetchval(
            "SELECT MIN(created_at) FROM message WHERE account_id = $1 AND refunded_at IS NULL",
            account_id,
        )
        start = min((first or datetime.now(UTC)).astimezone(zone).date(), today)
        end = today
    else:
        start, end = days
        where += " AND created_at >= $3 AND created_at < $4"
        values += [midnight_utc(start, zone), midnight_utc(end + timedelta(days=1), zone)]
    if case.granularity == "DAY":
        key, per_inbox, group = "(created_at AT TIME ZONE $2)::date", "NULL::bigint", "GROUP BY 1"
    else:
        key = "date_trunc('month', created_at AT TIME ZONE $2)::date"
        per_inbox, group = "inbox_id", "GROUP BY 1, 2"
    query = f"SELECT {key}, {per_inbox}, {SUMS} FROM message WHERE {where} {group}"
    STATEMENTS[case.key] = (query, values)
    rows = await conn.fetch(query, *values)
    members: list[int] = []
    owner_of: dict[int, int] = {}
    if case.group_by == "MEMBER":
        members = [
            r[0]
            for r in await conn.fetch(
                "SELECT id FROM member WHERE account_id = $1 ORDER BY id", account_id
            )
        ]
        owner_of = {
            r[0]: r[1]
            for r in await conn.fetch(
                "SELECT id, owner_id FROM inbox WHERE account_id = $1 AND kind = 'PERSONAL'",
                account_id,
            )
        }
    return _shape(case, start, end, [tuple(r) for r in rows], members, owner_of)
