"""The ledger replayed over a generated history (services/seeding.py), in bulk.

The rules of the live path, kept as running sums instead of row updates: a grant at the
start of each subscription month and the expiry of what was left of the last one, each
message charged SUBSCRIPTION first (services.ledger.debit_split), and an auto-recharge
of ``recharge_credits`` when an outbound message would not be covered.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from models import Account
from models.enums import CreditBucket, LedgerEntryKind
from services.balance import debit_split
from services.bulk import Row
from services.periods import period_at, period_by_index

ENTRY_COLUMNS = (
    "id", "account_id", "kind", "bucket", "credits", "balance_after", "amount_cents",
    "message_id", "period_index", "created_at",
)  # fmt: skip
PERIOD_COLUMNS = ("account_id", "index", "starts_at", "ends_at", "granted", "expired", "applied_at")
# A message to charge: its id, its entry kind (a LedgerEntryKind value), credits and time.
Charge = tuple[int, str, int, datetime]

# Enum values looked up once: a million entries would otherwise look each up every time.
_OUTBOUND = LedgerEntryKind.OUTBOUND_MESSAGE.value
_GRANT, _EXPIRY = LedgerEntryKind.ALLOTMENT_GRANT.value, LedgerEntryKind.ALLOTMENT_EXPIRY.value
_RECHARGE = LedgerEntryKind.AUTO_RECHARGE.value
_VALUE_OF = {bucket: bucket.value for bucket in CreditBucket}


@dataclass
class LedgerReplay:
    """The balances replayed over the messages, and the subscription months started."""

    account: Account
    next_entry_id: int
    recharge_credits: int
    periods: list[Row] = field(default_factory=list)
    subscription: int = field(init=False)
    purchased: int = field(init=False)
    period_index: int = field(init=False)
    next_period_at: datetime | None = field(init=False, default=None)
    _pending: list[Row] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.subscription = self.account.subscription_credits
        self.purchased = self.account.purchased_credits
        self.period_index = self.account.period_index

    def entries(self, charges: Iterable[Charge], *, until: datetime) -> Iterator[Row]:
        """The ledger rows of `charges`, then of the subscription months started by `until`."""
        for message_id, kind, credits, at in charges:
            self._start_periods_until(at)
            self._charge(message_id, credits, kind, at)
            yield from self._drain()
        self._start_periods_until(until)
        yield from self._drain()

    async def save(self) -> None:
        """Write the replayed buckets and subscription month onto the account row."""
        account = self.account
        await Account.filter(id=account.id).update(
            subscription_credits=self.subscription,
            purchased_credits=self.purchased,
            period_index=self.period_index,
            next_period_at=period_by_index(account.created_at, self.period_index).end,
            balance_version=account.balance_version + 1,
        )

    def _drain(self) -> list[Row]:
        rows, self._pending = self._pending, []
        return rows

    def _add(
        self,
        kind: str,
        bucket: CreditBucket,
        credits: int,
        at: datetime,
        *,
        message_id: int | None = None,
        amount_cents: int | None = None,
        period_index: int | None = None,
    ) -> None:
        if bucket is CreditBucket.SUBSCRIPTION:
            self.subscription += credits
        else:
            self.purchased += credits
        index = self.period_index if period_index is None else period_index
        self._pending.append(
            (self.next_entry_id, self.account.id, kind, _VALUE_OF[bucket], credits,
             self.subscription + self.purchased, amount_cents, message_id, index, at)
        )  # fmt: skip
        self.next_entry_id += 1

    def _start_periods_until(self, at: datetime) -> None:
        """The expiry and grant of every subscription month that started by `at`."""
        # Called once per message: compare with the next month's start, computed once a month.
        if self.next_period_at is not None and at < self.next_period_at:
            return
        created, monthly = self.account.created_at, self.account.monthly_credits
        while period_at(created, at).index > self.period_index:
            ended, index = self.period_index, self.period_index + 1
            period = period_by_index(created, index)
            left = self.subscription
            self.periods.append(
                (self.account.id, index, period.start, period.end, monthly, left, period.start)
            )
            if left > 0:
                self._add(
                    _EXPIRY, CreditBucket.SUBSCRIPTION, -left, period.start, period_index=ended
                )
            self.period_index = index
            self._add(_GRANT, CreditBucket.SUBSCRIPTION, monthly, period.start)
        self.next_period_at = period_by_index(created, self.period_index).end

    def _charge(self, message_id: int, credits: int, kind: str, at: datetime) -> None:
        if kind == _OUTBOUND and self.subscription + self.purchased < credits:
            amount = self.recharge_credits * self.account.price_per_credit_cents
            self._add(
                _RECHARGE, CreditBucket.PURCHASED, self.recharge_credits, at, amount_cents=amount
            )
        for bucket, part in debit_split(subscription=self.subscription, cost=credits):
            self._add(kind, bucket, part, at, message_id=message_id)
