"""Importing message history from another system (RULES.md "Importing history").

Two streaming passes over a JSON Lines file, so memory stays flat however long it is:

1. ``check``: every line is parsed and checked; nothing is written. Bad lines are
   collected (line number, reason) and the import stops with ``ImportRejected``.
2. ``load``: the lines are read again and written in chunks, with the seed's bulk
   machinery (services/bulk.py: COPY on PostgreSQL, batched inserts on SQLite), in ONE
   transaction with the usage rollups they add up to. A line whose carrier id the account
   already has, or that an earlier line of the file had, is skipped: each chunk asks the
   database which of its ids exist, and the earlier chunks are in the database by then.

Imported messages take no credits and write no ledger entries (``credits`` 0), carry no
``sender`` (which is how delivery reports and budgets tell them from Tally's own), and
publish no balance event. A dry run is a real run rolled back, so its counts are exact.

The account's row is locked only at the end, to add the rollups: the ledger's batches
lock the accounts they change (services/ledger_writer.py), and a lock held for the whole
load would stall every batch that includes this account. The zone the days were counted
in is checked under that lock; if ``updateAccount`` changed it meanwhile, the usage is
regrouped in the new zone instead. On SQLite the transaction holds the database's write
lock from its start (one writer), so a server on the same file waits for the import.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson
from tortoise.transactions import in_transaction

from models import Account, Inbox
from models.enums import Direction, MessageStatus
from services import bulk, rollups, sql
from services.calendar import local_day
from services.clock import Clock
from services.errors import NotFound, TallyError
from services.messaging import check_body
from services.phones import to_e164
from services.seeding import MESSAGE_COLUMNS
from services.segments import SegmentCount

__all__ = ["ImportProgress", "ImportRejected", "ImportResult", "LineProblem", "import_messages"]

KEYS = frozenset({"inbox", "direction", "peer", "body", "createdAt", "providerMessageId"})
REQUIRED = ("inbox", "direction", "peer", "body", "createdAt")
MAX_PROVIDER_ID = 128
# Lines written per statement (and per look-up of existing carrier ids).
CHUNK = 10_000
# Bad lines reported at most; the count of the others follows.
MAX_PROBLEMS = 20
# Lines between two progress reports.
REPORT_EVERY = 10_000
# The seed's columns but the id, which the database gives.
COLUMNS = MESSAGE_COLUMNS[1:]
_OUTBOUND, _INBOUND = Direction.OUTBOUND.value, Direction.INBOUND.value
_STATUS = {_OUTBOUND: MessageStatus.SENT.value, _INBOUND: MessageStatus.RECEIVED.value}


@dataclass(frozen=True, slots=True)
class ImportResult:
    imported: int
    skipped: int


@dataclass(frozen=True, slots=True)
class LineProblem:
    line: int
    reason: str


class ImportRejected(TallyError):
    """Bad lines: nothing was imported."""

    code = "INVALID_VALUE"

    def __init__(self, problems: list[LineProblem], total: int) -> None:
        super().__init__(f"{total:,} bad line(s); nothing was imported.")
        self.problems = problems
        self.total = total


class ImportProgress(Protocol):
    def stage(self, name: str, total_bytes: int) -> None:
        """A pass begins over ``total_bytes`` bytes."""

    def advance(self, count: int) -> None:
        """``count`` more bytes of the pass are done."""


@dataclass(frozen=True, slots=True)
class _Line:
    """One checked line, as the message table stores it."""

    inbox_id: int
    inbox_number: str
    direction: str
    peer: str
    body: str
    cost: SegmentCount
    created_at: datetime
    provider_message_id: str | None


class _BadLine(Exception):
    pass


class _DryRun(Exception):
    """Rolls a dry run's transaction back."""


async def import_messages(
    *,
    account_id: int,
    path: Path,
    region: str,
    clock: Clock,
    dry_run: bool = False,
    progress: ImportProgress | None = None,
) -> ImportResult:
    """Import the JSON Lines file at ``path`` into the account; see the module docstring."""
    account = await Account.get_or_none(id=account_id)
    if account is None:
        raise NotFound(f"No account has the id {account_id}.")
    inboxes = {i.phone_number: i.id for i in await Inbox.filter(account_id=account_id)}
    parse = _Parser(inboxes, region=region, now=clock.now())
    _check(path, parse, progress)
    result: ImportResult | None = None
    try:
        async with in_transaction():
            result = await _load(account, path, parse, progress)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    assert result is not None
    return result


def _check(path: Path, parse: _Parser, progress: ImportProgress | None) -> None:
    """Pass 1: every line checked, nothing kept but the problems."""
    problems: list[LineProblem] = []
    total = 0
    for number, raw in _lines(path, "checking", progress):
        try:
            parse(raw)
        except _BadLine as bad:
            total += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(LineProblem(number, str(bad)))
    if total:
        raise ImportRejected(problems, total)


async def _load(
    account: Account, path: Path, parse: _Parser, progress: ImportProgress | None
) -> ImportResult:
    """Pass 2: the messages in chunks, then the rollups under the account's lock."""
    zone = ZoneInfo(account.timezone)
    usage: dict[tuple[int, date], list[int]] = {}
    imported = skipped = 0
    lines = (parse(raw) for _, raw in _lines(path, "importing", progress))
    async with bulk.loading(account_id=account.id, tables=("message",)):
        while chunk := list(itertools.islice(lines, CHUNK)):
            fresh = await _fresh(account.id, chunk)
            skipped += len(chunk) - len(fresh)
            imported += len(fresh)
            rows = [_row(account.id, line, usage, zone) for line in fresh]
            await bulk.insert_rows("message", COLUMNS, rows)
    locked = await Account.select_for_update().get(id=account.id)
    if locked.timezone == account.timezone:
        await rollups.add_usage(account_id=account.id, totals=usage)
    else:
        await rollups.rebuild_usage(account_id=account.id, timezone=locked.timezone)
    return ImportResult(imported=imported, skipped=skipped)


def _lines(path: Path, stage: str, progress: ImportProgress | None) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, the line) of every line that is not blank."""
    if progress is not None:
        progress.stage(stage, path.stat().st_size)
    done = 0
    with path.open("rb") as source:
        for number, raw in enumerate(source, 1):
            done += len(raw)
            if progress is not None and number % REPORT_EVERY == 0:
                progress.advance(done)
                done = 0
            if raw.strip():
                yield number, raw
    if progress is not None:
        progress.advance(done)


async def _fresh(account_id: int, chunk: list[_Line]) -> list[_Line]:
    """The chunk without the lines whose carrier id the account (or the chunk) has already."""
    ids = list({line.provider_message_id for line in chunk if line.provider_message_id})
    existing = await _existing_ids(account_id, ids) if ids else set()
    fresh = []
    for line in chunk:
        if line.provider_message_id is not None:
            if line.provider_message_id in existing:
                continue
            existing.add(line.provider_message_id)
        fresh.append(line)
    return fresh


async def _existing_ids(account_id: int, ids: list[str]) -> set[str | None]:
    conn = sql.connection()
    if sql.is_postgres(conn):
        query = (
            "SELECT provider_message_id FROM message "
            "WHERE account_id = ? AND provider_message_id = ANY(?::text[])"
        )
        rows = await sql.fetch(conn, query, [account_id, ids])
    else:
        marks = ", ".join("?" * len(ids))
        query = (
            "SELECT provider_message_id FROM message "
            f"WHERE account_id = ? AND provider_message_id IN ({marks})"
        )
        rows = await sql.fetch(conn, query, [account_id, *ids])
    return {row[0] for row in rows}


def _row(
    account_id: int, line: _Line, usage: dict[tuple[int, date], list[int]], zone: ZoneInfo
) -> tuple[Any, ...]:
    """The message row of a line, counted in the usage it adds up to on the way."""
    cost = line.cost
    outbound = line.direction == _OUTBOUND
    rollups.tally_message(
        usage,
        inbox_id=line.inbox_id,
        direction=line.direction,
        day=local_day(line.created_at, zone),
        segments=cost.segments,
    )
    return (
        account_id, line.inbox_id, line.direction,
        line.inbox_number if outbound else line.peer,
        line.peer if outbound else line.inbox_number,
        line.body, cost.encoding.value, cost.segments, 0, _STATUS[line.direction], None,
        line.provider_message_id, line.created_at,
    )  # fmt: skip


# Bodies and numbers repeat across a history (templates, regular customers): each is
# worked out once. Bounded, so that a file of all-different values keeps memory flat.
_checked_body = functools.lru_cache(maxsize=65_536)(check_body)


class _Parser:
    """Turns a line into a ``_Line``, or raises ``_BadLine`` with the reason."""

    def __init__(self, inboxes: dict[str, int], *, region: str, now: datetime) -> None:
        self.inboxes = inboxes
        self.now = now
        self.number = functools.lru_cache(maxsize=65_536)(self._number)
        self.region = region

    def _number(self, raw: str, key: str) -> str:
        try:
            return to_e164(raw, region=self.region, field=key)
        except TallyError as error:
            raise _BadLine(f"{key}: {error.message}") from None

    def __call__(self, raw: bytes) -> _Line:
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _BadLine("not a JSON object (or not UTF-8)") from None
        if not isinstance(item, dict):
            raise _BadLine("not a JSON object")
        unknown = sorted(set(item) - KEYS)
        if unknown:
            raise _BadLine(f"unknown key(s): {', '.join(unknown)}")
        missing = [key for key in REQUIRED if key not in item]
        if missing:
            raise _BadLine(f"missing key(s): {', '.join(missing)}")
        for key in (*REQUIRED, "providerMessageId"):
            if key in item and not isinstance(item[key], str):
                if key == "providerMessageId" and item[key] is None:
                    continue
                raise _BadLine(f"{key}: must be a string")
        return self._line(item)

    def _line(self, item: dict[str, Any]) -> _Line:
        inbox_number = self.number(item["inbox"], "inbox")
        inbox_id = self.inboxes.get(inbox_number)
        if inbox_id is None:
            raise _BadLine(f"inbox: {inbox_number} is not a number of this account's inboxes")
        direction = item["direction"]
        if direction not in _STATUS:
            raise _BadLine("direction: must be OUTBOUND or INBOUND")
        body = item["body"]
        try:
            cost = _checked_body(body)
        except TallyError as error:
            raise _BadLine(f"body: {error.message}") from None
        return _Line(
            inbox_id=inbox_id,
            inbox_number=inbox_number,
            direction=direction,
            peer=self.number(item["peer"], "peer"),
            body=body,
            cost=cost,
            created_at=self._created_at(item["createdAt"]),
            provider_message_id=self._provider_id(item.get("providerMessageId")),
        )

    def _created_at(self, text: str) -> datetime:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _BadLine("createdAt: not an ISO-8601 date and time") from None
        if moment.utcoffset() is None:
            raise _BadLine("createdAt: needs an offset (e.g. Z or +02:00)")
        moment = moment.astimezone(UTC)
        if moment > self.now:
            raise _BadLine("createdAt: in the future")
        return moment

    @staticmethod
    def _provider_id(value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip() or len(value) > MAX_PROVIDER_ID:
            raise _BadLine(f"providerMessageId: 1 to {MAX_PROVIDER_ID} characters")
        if "\x00" in value:
            raise _BadLine("providerMessageId: holds a NUL character")
        return value
