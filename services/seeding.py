"""Bulk history: months of realistic traffic for demos and benchmarks, written in bulk.

The live path charges one message at a time (services/messaging.py), a few hundred
microseconds each; a million messages that way would take many minutes. This module
replays the same rules over a generated timeline in Python and streams the rows into
their tables as they are made (services/bulk.py: COPY on PostgreSQL), in two passes:
the messages, tallied into the usage rollups on the way, then the ledger replayed over
them (services/ledger_replay.py), whose entries point at the messages. All in ONE
transaction: a seed that fails leaves nothing behind, and the balance equals the sum
of the ledger when it commits.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from models import Inbox, InboxAccess, LedgerEntry, Message
from models.enums import Direction, LedgerEntryKind, MessageStatus
from services import bulk, ledger, rollups, sql
from services.bulk import Row
from services.calendar import local_days
from services.ledger_replay import ENTRY_COLUMNS, PERIOD_COLUMNS, Charge, LedgerReplay
from services.segments import count_segments

BODIES = (
    "Hi! Your appointment is confirmed for tomorrow at 10:00.",
    "Thanks, see you then",
    "Reminder: please bring your insurance card and arrive 10 minutes early. Reply C to "
    "confirm or R to reschedule, or call (415) 555-0100 with any questions about your visit.",
    "Can we move it to Friday? 🙏",
    "Ça marche, à vendredi ! 😊",
    "Gracias por su mensaje. Le responderemos pronto.",
    "Your balance is €45 - pay at the front desk [cash or card].",
    "Running 5 min late, sorry!",
)
# Business hours carry the traffic; weekends a fraction of it.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 18, 16, 14, 16, 18, 18, 16, 12, 8, 6, 4, 3, 2, 1)
WEEKDAY_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 0.9, 0.35, 0.2)
OUTBOUND_SHARE = 0.6
CUSTOMERS = tuple(f"+1415555{n:04d}" for n in range(2000, 2400))
LOADED_TABLES = ("message", "ledger_entry", "subscription_period")
# Messages between two calls of the progress callback.
PROGRESS_EVERY = 20_000

MESSAGE_COLUMNS = (
    "id", "account_id", "inbox_id", "direction", "from_number", "to_number", "body",
    "encoding", "segments", "credits", "status", "sender_id", "provider_message_id",
    "created_at",
)  # fmt: skip

# Enum values looked up once: a million rows would otherwise look each up every time.
_OUTBOUND, _INBOUND = Direction.OUTBOUND.value, Direction.INBOUND.value
_DELIVERED, _RECEIVED = MessageStatus.DELIVERED.value, MessageStatus.RECEIVED.value
_KIND_OF = {
    _OUTBOUND: LedgerEntryKind.OUTBOUND_MESSAGE.value,
    _INBOUND: LedgerEntryKind.INBOUND_MESSAGE.value,
}


@dataclass(frozen=True, slots=True)
class Sender:
    inbox_id: int
    phone_number: str
    member_id: int | None


@dataclass
class Traffic:
    """The history's messages: made row by row, tallied by local day, charged afterwards."""

    account_id: int
    senders: list[Sender]
    zone: ZoneInfo
    usage: dict[tuple[int, date], list[int]] = field(default_factory=dict)
    charges: list[Charge] = field(default_factory=list)

    def messages(
        self,
        rng: random.Random,
        moments: Sequence[datetime],
        *,
        first_id: int,
        progress: Callable[[int], None] | None,
    ) -> Iterator[Row]:
        """One message row per moment, ids from `first_id`; `progress` gets the counts made."""
        costs = [(c.encoding.value, c.segments, c.credits) for c in map(count_segments, BODIES)]
        days = local_days(moments, self.zone)
        for (message_id, at), day in zip(enumerate(moments, first_id), days, strict=True):
            sender = rng.choice(self.senders)
            pick = rng.randrange(len(BODIES))
            outbound = rng.random() < OUTBOUND_SHARE
            customer, own = rng.choice(CUSTOMERS), sender.phone_number
            encoding, segments, credits = costs[pick]
            direction = _OUTBOUND if outbound else _INBOUND
            row = (
                message_id, self.account_id, sender.inbox_id, direction,
                own if outbound else customer, customer if outbound else own, BODIES[pick],
                encoding, segments, credits, _DELIVERED if outbound else _RECEIVED,
                sender.member_id if outbound else None, f"SMseed{self.account_id}x{message_id}", at,
            )  # fmt: skip
            rollups.tally_message(
                self.usage, inbox_id=sender.inbox_id, direction=direction, day=day,
                segments=segments,
            )  # fmt: skip
            self.charges.append((message_id, _KIND_OF[direction], credits, at))
            if progress is not None and len(self.charges) % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
            yield row
        if progress is not None and len(self.charges) % PROGRESS_EVERY:
            progress(len(self.charges) % PROGRESS_EVERY)


def instants(
    rng: random.Random, *, count: int, start: datetime, days: int, zone: ZoneInfo
) -> list[datetime]:
    """`count` UTC instants over `days` days from `start`, with a daily and weekly rhythm."""
    first = start.astimezone(zone).date()
    dates = [first + timedelta(days=d) for d in range(days)]
    growth = [WEEKDAY_WEIGHTS[day.weekday()] * (1 + d / days) for d, day in enumerate(dates)]
    chosen_days = rng.choices(range(days), weights=growth, k=count)
    chosen_hours = rng.choices(range(24), weights=HOUR_WEIGHTS, k=count)
    # Each day's midnight as UTC, shifted by the zone's offset at noon, and the steps into
    # the day: made once, so that each instant costs two additions.
    midnights = [_utc_midnight(day, zone) for day in dates]
    hours = [timedelta(hours=hour) for hour in range(24)]
    seconds = [timedelta(seconds=second) for second in range(3600)]
    result = [
        midnights[day] + hours[hour] + seconds[rng.randrange(3600)]
        for day, hour in zip(chosen_days, chosen_hours, strict=True)
    ]
    result.sort()
    return [moment for moment in result if moment >= start]


def _utc_midnight(day: date, zone: ZoneInfo) -> datetime:
    offset = datetime(day.year, day.month, day.day, 12, tzinfo=zone).utcoffset()
    assert offset is not None
    return datetime(day.year, day.month, day.day, tzinfo=UTC) - offset


async def grow_history(
    *,
    account_id: int,
    messages: int,
    days: int,
    now: datetime,
    seed: int = 7,
    recharge_credits: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Add `messages` messages over the `days` days before `now`; the number written.

    The account must be at least `days` old and have no messages yet (its history
    starts empty), and have inboxes to send from. `progress` is called with the number
    of messages made since its last call.
    """
    rng = random.Random(seed)
    senders = await _senders(account_id)
    if not senders:
        raise ValueError("the account has no inbox to send from")
    with _collector_paused():
        async with ledger.exclusive(account_id) as account:
            if await Message.exists(account_id=account_id):
                raise ValueError("the account already has messages")
            traffic = Traffic(account_id, senders, ZoneInfo(account.timezone))
            start = now - timedelta(days=days)
            moments = instants(rng, count=messages, start=start, days=days, zone=traffic.zone)
            moments = [m for m in moments if account.created_at <= m <= now]
            rows = traffic.messages(
                rng, moments, first_id=await _next_id(Message), progress=progress
            )
            replay = LedgerReplay(account, await _next_id(LedgerEntry), recharge_credits)
            async with bulk.loading(account_id=account_id, tables=LOADED_TABLES):
                await bulk.insert_rows("message", MESSAGE_COLUMNS, rows)
                await _write_ledger(replay, traffic.charges, until=now)
            # The messages are in hand: group them here rather than read a million rows back.
            await rollups.replace_usage(account_id=account_id, totals=traffic.usage)
    return len(traffic.charges)


async def _write_ledger(ledger: LedgerReplay, charges: list[Charge], *, until: datetime) -> None:
    """The entries and months of the replay, and the account's buckets they end at."""
    await bulk.insert_rows("ledger_entry", ENTRY_COLUMNS, ledger.entries(charges, until=until))
    await bulk.insert_rows("subscription_period", PERIOD_COLUMNS, ledger.periods)
    await _continue_sequences()
    await ledger.save()


@contextmanager
def _collector_paused() -> Iterator[None]:
    # The cyclic collector would walk the million row tuples alive here again and again
    # (most of the 15% of a seed that py-spy put on copying rows, docs/benchmarks.md);
    # tuples of plain values hold no cycles to collect.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _senders(account_id: int) -> list[Sender]:
    inboxes = await Inbox.filter(account_id=account_id).order_by("id")
    access = await InboxAccess.filter(inbox_id__in=[i.id for i in inboxes]).order_by("id")
    first_member = {a.inbox_id: a.member_id for a in reversed(access)}
    return [Sender(i.id, i.phone_number, i.owner_id or first_member.get(i.id)) for i in inboxes]


async def _next_id(model: type[Message] | type[LedgerEntry]) -> int:
    last = await model.all().order_by("-id").first()
    return 1 if last is None else last.id + 1


async def _continue_sequences() -> None:
    """On PostgreSQL, move the id sequences past the ids written explicitly."""
    conn = sql.connection()
    if sql.is_postgres(conn):
        for table in ("message", "ledger_entry"):
            sequence = f"pg_get_serial_sequence('{table}', 'id')"
            await conn.execute_query(f"SELECT setval({sequence}, (SELECT MAX(id) FROM {table}))")
