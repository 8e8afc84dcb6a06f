"""The webhook outbox: claiming due deliveries and recording their attempts.

Deliveries are written with their notice (services/notices.py) and sent after
commit by a dispatcher in every server process (services/dispatcher.py). A claim
leases rows until a deadline, so no two processes send one attempt twice: on
PostgreSQL the claim skips rows another claim holds locked (FOR UPDATE SKIP
LOCKED); SQLite has one writer at a time. An attempt is recorded only by the
claim that made it; a process that dies mid-attempt leaves its lease to expire,
and the attempt is made again (at-least-once: receivers dedupe by the event id).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from models import WebhookDelivery
from services.clock import to_micros
from services.history import Page
from services.sql import connection, fetch, fetch_written, is_postgres, run

DEFAULT_RETRY_SCHEDULE = (10.0, 60.0, 300.0, 1800.0, 7200.0, 21600.0)
CANCELLED = "The endpoint was deleted."

_CLAIM = (
    "UPDATE webhook_delivery SET claimed_until_us = ? WHERE id IN ("
    "SELECT id FROM webhook_delivery WHERE status = 'PENDING' AND next_attempt_us <= ?"
    " AND (claimed_until_us IS NULL OR claimed_until_us <= ?){busy}"
    " ORDER BY next_attempt_us, id LIMIT ?{lock})"
    " RETURNING id, endpoint_id, payload, attempts"
)
_ENDPOINTS = "SELECT id, url, secret, deleted_at FROM webhook_endpoint WHERE id IN ({marks})"
_RECORD = (
    "UPDATE webhook_delivery SET status = ?, attempts = attempts + 1, last_status_code = ?,"
    " last_error = ?, next_attempt_us = ?, claimed_until_us = NULL"
    " WHERE id = ? AND claimed_until_us = ? AND status = 'PENDING'"
)
_RELEASE = (
    "UPDATE webhook_delivery SET claimed_until_us = NULL WHERE id = ? AND claimed_until_us = ?"
)
_CANCEL = (
    "UPDATE webhook_delivery SET status = 'FAILED', last_error = ?, next_attempt_us = NULL,"
    " claimed_until_us = NULL WHERE endpoint_id = ? AND status = 'PENDING'"
)

_bells: set[asyncio.Event] = set()


def ring() -> None:
    """Wake this process's dispatchers: deliveries were committed and are due now."""
    for bell in list(_bells):
        bell.set()


def listen() -> asyncio.Event:
    """A bell that `ring` sets; give it back with `stop_listening`."""
    bell = asyncio.Event()
    _bells.add(bell)
    return bell


def stop_listening(bell: asyncio.Event) -> None:
    _bells.discard(bell)


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    secret: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this process holds until `lease` (microseconds since the epoch)."""

    id: int
    endpoint_id: int
    payload: str
    attempts: int
    lease: int
    target: Target


def parse_schedule(text: str | None) -> tuple[float, ...]:
    """TALLY_WEBHOOK_RETRY_SCHEDULE: seconds between attempts, comma-separated."""
    if text is None or not text.strip():
        return DEFAULT_RETRY_SCHEDULE
    gaps = tuple(float(part) for part in text.split(","))
    if any(gap < 0 for gap in gaps):
        raise ValueError("TALLY_WEBHOOK_RETRY_SCHEDULE takes seconds of 0 or more")
    return gaps


async def claim(
    *, now: datetime, lease: timedelta, limit: int, busy: Collection[int] = ()
) -> list[Claimed]:
    """Lease up to `limit` due deliveries, skipping the endpoints in `busy`."""
    conn = connection()
    until = to_micros(now + lease)
    skip = f" AND endpoint_id NOT IN ({', '.join('?' * len(busy))})" if busy else ""
    lock = " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else ""
    text = _CLAIM.format(busy=skip, lock=lock)
    rows = await fetch_written(conn, text, [until, to_micros(now), to_micros(now), *busy, limit])
    if not rows:
        return []
    targets = await _targets(conn, {int(row[1]) for row in rows})
    return sorted(
        (
            Claimed(int(r[0]), int(r[1]), str(r[2]), int(r[3]), until, targets[int(r[1])])
            for r in rows
        ),
        key=lambda claimed: claimed.id,
    )


async def _targets(conn: BaseDBAsyncClient, ids: set[int]) -> dict[int, Target]:
    marks = ", ".join("?" * len(ids))
    rows = await fetch(conn, _ENDPOINTS.format(marks=marks), sorted(ids))
    return {int(r[0]): Target(str(r[1]), str(r[2]), r[3] is not None) for r in rows}


async def release(claimed: Claimed) -> None:
    """Give a claimed delivery back unsent (it stays due)."""
    await run(connection(), _RELEASE, [claimed.id, claimed.lease])


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt got: a status code, or why there was none."""

    claimed: Claimed
    status_code: int | None
    error: str | None
    at: datetime


async def record_attempts(attempts: Sequence[Attempt], *, schedule: Sequence[float]) -> None:
    """Record attempts, in one transaction: success on any 2xx, else the next attempt
    after the schedule's gap, or FAILED once the schedule is spent."""
    async with in_transaction() as conn:
        for attempt in attempts:
            await run(conn, _RECORD, _recorded(attempt, schedule))


def _recorded(attempt: Attempt, schedule: Sequence[float]) -> list[object]:
    number = attempt.claimed.attempts + 1
    error = None if attempt.error is None else attempt.error[:500]
    if attempt.status_code is not None and 200 <= attempt.status_code < 300:
        status, error, next_at = "SUCCEEDED", None, None
    elif attempt.error == CANCELLED:
        status, next_at = "FAILED", None
    elif number <= len(schedule):
        status = "PENDING"
        next_at = to_micros(attempt.at + timedelta(seconds=schedule[number - 1]))
    else:
        status, next_at = "FAILED", None
    return [status, attempt.status_code, error, next_at, attempt.claimed.id, attempt.claimed.lease]


async def cancel_pending(endpoint_id: int) -> None:
    """Cancel an endpoint's pending deliveries (it was deleted)."""
    await run(connection(), _CANCEL, [CANCELLED, endpoint_id])


async def delivery_page(
    *, endpoint_id: int, first: int, after: int | None
) -> Page[WebhookDelivery]:
    """An endpoint's deliveries, newest first."""
    query = WebhookDelivery.filter(endpoint_id=endpoint_id)
    if after is not None:
        query = query.filter(id__lt=after)
    rows = await query.order_by("-id").limit(first + 1).prefetch_related("notice")
    return Page(rows=rows[:first], has_next=len(rows) > first)
