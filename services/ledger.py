"""The credit ledger: the only place where balances change.

Every change runs inside a transaction that holds the account's row lock
(`lock_account`), appends one entry per bucket touched, and moves the account's
bucket columns by exactly the entries' credits, so that for every account and
bucket the balance equals the sum of that bucket's entries, always.
`balance_after` is the total right after the entry, in commit order, because the
row lock orders all changes of one account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models import Account, LedgerEntry
from models.enums import CreditBucket, LedgerEntryKind
from services import alerts, notices
from services.notices import NoticeDraft, RaisedNotice
from services.periods import period_by_index
from services.sql import connection

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


async def lock_account(account_id: int) -> Account:
    """The account row, locked until the surrounding transaction ends.

    PostgreSQL takes a row lock (FOR UPDATE). SQLite ignores FOR UPDATE, but every
    write transaction there starts with BEGIN IMMEDIATE and so already holds the
    database's write lock.
    """
    return await Account.select_for_update().get(id=account_id)


async def post(
    account: Account, postings: Sequence[Posting], *, now: datetime, period_index: int | None = None
) -> list[LedgerEntry]:
    """Append `postings` and move the locked `account`'s buckets by them.

    Must run inside the transaction that locked `account`. `period_index` is the
    subscription month the entries belong to (default: the account's current one).
    """
    entries = []
    for posting in postings:
        if posting.bucket is SUBSCRIPTION:
            account.subscription_credits += posting.credits
        else:
            account.purchased_credits += posting.credits
        if account.subscription_credits < 0:
            raise AssertionError(f"subscription credits of account {account.id} went negative")
        entries.append(
            await LedgerEntry.create(
                account_id=account.id,
                kind=posting.kind,
                bucket=posting.bucket,
                credits=posting.credits,
                balance_after=account.subscription_credits + account.purchased_credits,
                amount_cents=posting.amount_cents,
                message_id=posting.message_id,
                period_index=account.period_index if period_index is None else period_index,
                created_at=now,
            )
        )
    return entries


async def save_balance(account: Account) -> Balance:
    """Write the locked account's buckets and period, with a new version; return the balance."""
    account.balance_version += 1
    await Account.filter(id=account.id).update(
        subscription_credits=account.subscription_credits,
        purchased_credits=account.purchased_credits,
        period_index=account.period_index,
        next_period_at=account.next_period_at,
        balance_version=account.balance_version,
        alert_fire_below=account.alert_fire_below,
        alert_recover_at=account.alert_recover_at,
    )
    return balance_of(account)


# --- spend control (issue 12): the one place every change passes -------------------------
async def save_change(
    account: Account,
    entries: Sequence[LedgerEntry],
    *,
    now: datetime,
    raised: Sequence[NoticeDraft] = (),
) -> Change:
    """Save the locked account's balance as `save_balance`, with the change's notices.

    The balance alerts the new total crosses come first, then `raised` (the caller's
    budget and auto-recharge notices); all are written, with their webhook deliveries,
    in the change's transaction.
    """
    conn = connection()
    drafts = [*await alerts.notices_for_change(conn, account=account, now=now), *raised]
    balance = await save_balance(account)
    written = await notices.record(conn, account_id=account.id, drafts=drafts, now=now)
    return Change(balance=balance, entries=tuple(entries), notices=tuple(written))


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
