"""Bulk history: months of realistic traffic for demos and benchmarks, written in bulk.

The live path charges one message at a time (services/messaging.py), a few hundred
microseconds each; a million messages that way would take many minutes. This module
replays the same rules over a generated timeline in Python (SUBSCRIPTION first, an
expiry and a grant at each subscription month, an auto-recharge when an outbound
message would not be covered) and writes the rows with executemany, all in ONE
transaction: a seed that fails leaves nothing behind, and the balance equals the sum
of the ledger when it commits. The usage rollups are then rebuilt from the messages.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from models import Account, Inbox, InboxAccess, LedgerEntry, Message
from models.enums import CreditBucket, Direction, LedgerEntryKind, MessageStatus
from services import rollups
from services.ledger import debit_split, lock_account
from services.periods import period_at, period_by_index
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
CHUNK = 20_000
CUSTOMERS = tuple(f"+1415555{n:04d}" for n in range(2000, 2400))


@dataclass(frozen=True, slots=True)
class Sender:
    inbox: Inbox
    member_id: int | None


@dataclass
class Ledger:
    """Running balances and the rows of the replayed ledger."""

    account: Account
    next_entry_id: int
    recharge_credits: int
    rows: list[tuple[Any, ...]]
    periods: list[tuple[Any, ...]]
    next_period_at: datetime | None = None

    def add(
        self,
        kind: LedgerEntryKind,
        bucket: CreditBucket,
        credits: int,
        at: datetime,
        *,
        message_id: int | None = None,
        amount_cents: int | None = None,
        period_index: int | None = None,
    ) -> None:
        if bucket is CreditBucket.SUBSCRIPTION:
            self.account.subscription_credits += credits
        else:
            self.account.purchased_credits += credits
        total = self.account.subscription_credits + self.account.purchased_credits
        index = self.account.period_index if period_index is None else period_index
        self.rows.append(
            (self.next_entry_id, self.account.id, kind.value, bucket.value, credits, total,
             amount_cents, message_id, index, at)
        )  # fmt: skip
        self.next_entry_id += 1

    def start_periods_until(self, at: datetime) -> None:
        """The expiry and grant of every subscription month that started by `at`."""
        account = self.account
        # Called once per message: compare with the next month's start, computed once a month.
        if self.next_period_at is not None and at < self.next_period_at:
            return
        while period_at(account.created_at, at).index > account.period_index:
            ended, index = account.period_index, account.period_index + 1
            period = period_by_index(account.created_at, index)
            left = account.subscription_credits
            self.periods.append(
                (account.id, index, period.start, period.end, account.monthly_credits, left,
                 period.start)
            )  # fmt: skip
            if left > 0:
                self.add(
                    LedgerEntryKind.ALLOTMENT_EXPIRY, CreditBucket.SUBSCRIPTION, -left,
                    period.start, period_index=ended,
                )  # fmt: skip
            account.period_index = index
            self.add(
                LedgerEntryKind.ALLOTMENT_GRANT, CreditBucket.SUBSCRIPTION,
                account.monthly_credits, period.start,
            )  # fmt: skip
        self.next_period_at = period_by_index(account.created_at, account.period_index).end

    def charge(self, message_id: int, credits: int, kind: LedgerEntryKind, at: datetime) -> None:
        total = self.account.subscription_credits + self.account.purchased_credits
        if kind is LedgerEntryKind.OUTBOUND_MESSAGE and total < credits:
            amount = self.recharge_credits * self.account.price_per_credit_cents
            self.add(
                LedgerEntryKind.AUTO_RECHARGE, CreditBucket.PURCHASED, self.recharge_credits,
                at, amount_cents=amount,
            )  # fmt: skip
        for bucket, part in debit_split(
            subscription=self.account.subscription_credits, cost=credits
        ):
            self.add(kind, bucket, part, at, message_id=message_id)


def instants(
    rng: random.Random, *, count: int, start: datetime, days: int, zone: ZoneInfo
) -> list[datetime]:
    """`count` UTC instants over `days` days from `start`, with a daily and weekly rhythm."""
    first = start.astimezone(zone).date()
    dates = [first + timedelta(days=d) for d in range(days)]
    growth = [WEEKDAY_WEIGHTS[day.weekday()] * (1 + d / days) for d, day in enumerate(dates)]
    chosen_days = rng.choices(range(days), weights=growth, k=count)
    chosen_hours = rng.choices(range(24), weights=HOUR_WEIGHTS, k=count)
    noon_offsets = [datetime(d.year, d.month, d.day, 12, tzinfo=zone).utcoffset() for d in dates]
    result = []
    for day_index, hour in zip(chosen_days, chosen_hours, strict=True):
        day, offset = dates[day_index], noon_offsets[day_index]
        assert offset is not None
        local = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
        result.append(local - offset + timedelta(seconds=rng.randrange(3600)))
    result.sort()
    return [moment for moment in result if moment >= start]


async def _senders(account_id: int) -> list[Sender]:
    inboxes = await Inbox.filter(account_id=account_id).order_by("id")
    access = await InboxAccess.filter(inbox_id__in=[i.id for i in inboxes]).order_by("id")
    first_member = {a.inbox_id: a.member_id for a in reversed(access)}
    return [Sender(i, i.owner_id or first_member.get(i.id)) for i in inboxes]


def _chunks(rows: Sequence[tuple[Any, ...]]) -> Iterator[Sequence[tuple[Any, ...]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


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
    starts empty), and have inboxes to send from.
    """
    rng = random.Random(seed)
    counts = [count_segments(body) for body in BODIES]
    senders = await _senders(account_id)
    if not senders:
        raise ValueError("the account has no inbox to send from")
    async with in_transaction():
        account = await lock_account(account_id)
        if await Message.exists(account_id=account_id):
            raise ValueError("the account already has messages")
        zone = ZoneInfo(account.timezone)
        moments = instants(
            rng, count=messages, start=now - timedelta(days=days), days=days, zone=zone
        )
        moments = [m for m in moments if account.created_at <= m <= now]
        ledger = Ledger(
            account=account,
            next_entry_id=await _next_id(LedgerEntry),
            recharge_credits=recharge_credits,
            rows=[],
            periods=[],
        )
        message_rows = []
        usage: dict[tuple[int, date], list[int]] = {}
        message_id = await _next_id(Message)
        for at in moments:
            ledger.start_periods_until(at)
            sender = rng.choice(senders)
            pick = rng.randrange(len(BODIES))
            cost = counts[pick]
            outbound = rng.random() < OUTBOUND_SHARE
            customer = rng.choice(CUSTOMERS)
            own = sender.inbox.phone_number
            message_rows.append(
                (message_id, account_id, sender.inbox.id,
                 (Direction.OUTBOUND if outbound else Direction.INBOUND).value,
                 own if outbound else customer, customer if outbound else own,
                 BODIES[pick], cost.encoding.value, cost.segments, cost.credits,
                 (MessageStatus.DELIVERED if outbound else MessageStatus.RECEIVED).value,
                 sender.member_id if outbound else None, f"SMseed{account_id}x{message_id}", at)
            )  # fmt: skip
            kind = LedgerEntryKind.OUTBOUND_MESSAGE if outbound else LedgerEntryKind.INBOUND_MESSAGE
            ledger.charge(message_id, cost.credits, kind, at)
            rollups.tally_message(
                usage, inbox_id=sender.inbox.id, direction=message_rows[-1][3],
                created_at=at, segments=cost.segments, zone=zone,
            )  # fmt: skip
            message_id += 1
        ledger.start_periods_until(now)
        await _write(ledger, message_rows, progress)
        # The messages are in hand: group them here rather than read a million rows back.
        await rollups.replace_usage(account_id=account_id, totals=usage)
    return len(message_rows)


async def _next_id(model: type[Message] | type[LedgerEntry]) -> int:
    last = await model.all().order_by("-id").first()
    return 1 if last is None else last.id + 1


_MESSAGE_INSERT = """INSERT INTO message (id, account_id, inbox_id, direction, from_number,
to_number, body, encoding, segments, credits, status, sender_id, provider_message_id, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_ENTRY_INSERT = """INSERT INTO ledger_entry (id, account_id, kind, bucket, credits,
balance_after, amount_cents, message_id, period_index, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_PERIOD_INSERT = """INSERT INTO subscription_period (account_id, "index", starts_at, ends_at,
granted, expired, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)"""


async def _write(
    ledger: Ledger, messages: list[tuple[Any, ...]], progress: Callable[[int], None] | None
) -> None:
    conn = rollups.connection()
    for chunk in _chunks(messages):
        await conn.execute_many(rollups.sql(conn, _MESSAGE_INSERT), [list(r) for r in chunk])
        if progress is not None:
            progress(len(chunk))
    for chunk in _chunks(ledger.rows):
        await conn.execute_many(rollups.sql(conn, _ENTRY_INSERT), [list(r) for r in chunk])
    if ledger.periods:
        await conn.execute_many(
            rollups.sql(conn, _PERIOD_INSERT), [list(r) for r in ledger.periods]
        )
    if rollups.is_postgres(conn):
        for table in ("message", "ledger_entry"):
            # Rows were written with explicit ids; the sequences must continue after them.
            sequence = f"pg_get_serial_sequence('{table}', 'id')"
            await conn.execute_query(f"SELECT setval({sequence}, (SELECT MAX(id) FROM {table}))")
    account = ledger.account
    await Account.filter(id=account.id).update(
        subscription_credits=account.subscription_credits,
        purchased_credits=account.purchased_credits,
        period_index=account.period_index,
        next_period_at=period_by_index(account.created_at, account.period_index).end,
        balance_version=account.balance_version + 1,
    )
