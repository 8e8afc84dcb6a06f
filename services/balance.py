"""Credit balances as values: a balance at one version, a posting, a committed change.

What the ledger (services/ledger.py) writes and what balance events carry; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models import Account, LedgerEntry
from models.enums import CreditBucket, LedgerEntryKind
from services.notices import RaisedNotice
from services.periods import period_by_index

SUBSCRIPTION = CreditBucket.SUBSCRIPTION
PURCHASED = CreditBucket.PURCHASED
# The contract's Int is 32-bit, and so are the balance columns: a balance, an entry's
# balanceAfter and an amount in cents stay at or under it.
LARGEST_AMOUNT = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's credits at one version; the period is the current subscription month."""

    account_id: int
    subscription: int
    purchased: int
    period_start: datetime
    period_end: datetime
    version: int

    @property
    def total(self) -> int:
        return self.subscription + self.purchased


@dataclass(frozen=True, slots=True)
class Posting:
    """One signed change of one bucket, before it is written."""

    kind: LedgerEntryKind
    bucket: CreditBucket
    credits: int
    amount_cents: int | None = None
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """A committed change: the balance right after it, its entries and notices, in order."""

    balance: Balance
    entries: Sequence[LedgerEntry] = field(default_factory=tuple)
    notices: Sequence[RaisedNotice] = field(default_factory=tuple)


def balance_of(account: Account) -> Balance:
    period = period_by_index(account.created_at, account.period_index)
    return Balance(
        account_id=account.id,
        subscription=account.subscription_credits,
        purchased=account.purchased_credits,
        period_start=period.start,
        period_end=period.end,
        version=account.balance_version,
    )


def debit_split(*, subscription: int, cost: int) -> list[tuple[CreditBucket, int]]:
    """Buckets and (negative) credits for a debit of `cost`: SUBSCRIPTION first, then PURCHASED.

    PURCHASED takes whatever SUBSCRIPTION cannot cover, and may go negative; whether
    that is allowed (inbound) or refused (outbound) is the caller's rule.
    """
    from_subscription = min(max(subscription, 0), cost)
    parts = []
    if from_subscription:
        parts.append((SUBSCRIPTION, -from_subscription))
    if cost > from_subscription:
        parts.append((PURCHASED, -(cost - from_subscription)))
    return parts


def balance_to_json(balance: Balance) -> dict[str, Any]:
    """A balance as stored in an idempotency record (to answer repeats with the first result)."""
    return {
        "account_id": balance.account_id,
        "subscription": balance.subscription,
        "purchased": balance.purchased,
        "period_start": balance.period_start.isoformat(),
        "period_end": balance.period_end.isoformat(),
        "version": balance.version,
    }


def balance_from_json(data: dict[str, Any]) -> Balance:
    return Balance(
        account_id=data["account_id"],
        subscription=data["subscription"],
        purchased=data["purchased"],
        period_start=datetime.fromisoformat(data["period_start"]),
        period_end=datetime.fromisoformat(data["period_end"]),
        version=data["version"],
    )
