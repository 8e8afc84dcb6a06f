"""Monthly allotments: at each subscription month's start, expire what is left and grant anew.

Months are anchored at the account's creation instant (services/periods.py). The
grant of period n is applied lazily, by the first balance read or write after it
starts, or by the background sweep of `tally serve`. A `SubscriptionPeriod` row
per account and period, under a unique key, makes each grant exactly-once even
with concurrent requests and several processes: the account row lock serialises
them, and the unique key is the backstop if anything ever bypassed the lock.
"""

from __future__ import annotations

from datetime import datetime

from tortoise.transactions import in_transaction

from models import Account, LedgerEntry, SubscriptionPeriod
from models.enums import CreditBucket, LedgerEntryKind
from services.clock import Clock
from services.ledger import Change, Posting, balance_of, lock_account, post, save_change
from services.periods import period_at, period_by_index, period_start


def is_due(account: Account, now: datetime) -> bool:
    """Whether a subscription month has started since the account's last grant."""
    return period_at(account.created_at, now).index > account.period_index


async def grant_first_allotment(account: Account, *, now: datetime) -> list[LedgerEntry]:
    """Period 0's grant, for a new account, inside its creating transaction."""
    period = period_by_index(account.created_at, 0)
    await SubscriptionPeriod.create(
        account_id=account.id,
        index=0,
        starts_at=period.start,
        ends_at=period.end,
        granted=account.monthly_credits,
        expired=0,
        applied_at=now,
    )
    account.next_period_at = period.end
    grant = Posting(
        LedgerEntryKind.ALLOTMENT_GRANT, CreditBucket.SUBSCRIPTION, account.monthly_credits
    )
    return await post(account, [grant], now=now)


async def apply_due_allotments(account: Account, *, now: datetime) -> list[LedgerEntry]:
    """Catch the locked account up to the current month: one expiry + grant pair per month.

    Missed months are caught up one by one, each with its own pair, so the ledger
    tells every month's story. Runs inside the transaction that locked `account`.
    """
    entries: list[LedgerEntry] = []
    current = period_at(account.created_at, now).index
    while account.period_index < current:
        ended, index = account.period_index, account.period_index + 1
        period = period_by_index(account.created_at, index)
        left = account.subscription_credits
        await SubscriptionPeriod.create(
            account_id=account.id,
            index=index,
            starts_at=period.start,
            ends_at=period.end,
            granted=account.monthly_credits,
            expired=left,
            applied_at=now,
        )
        if left > 0:
            expiry = Posting(LedgerEntryKind.ALLOTMENT_EXPIRY, CreditBucket.SUBSCRIPTION, -left)
            entries += await post(account, [expiry], now=now, period_index=ended)
        account.period_index = index
        grant = Posting(
            LedgerEntryKind.ALLOTMENT_GRANT, CreditBucket.SUBSCRIPTION, account.monthly_credits
        )
        entries += await post(account, [grant], now=now)
    account.next_period_at = period_start(account.created_at, account.period_index + 1)
    return entries


async def catch_up(account_id: int, *, clock: Clock) -> Change | None:
    """Apply due allotments in a transaction of their own; None when nothing was due."""
    async with in_transaction():
        account = await lock_account(account_id)
        if not is_due(account, clock.now()):
            return None
        entries = await apply_due_allotments(account, now=clock.now())
        return await save_change(account, entries, now=clock.now())


async def current_balance_change(account_id: int, *, clock: Clock) -> Change:
    """The account's balance now, applying a due allotment first (as its own change)."""
    account = await Account.get(id=account_id)
    if is_due(account, clock.now()):
        change = await catch_up(account_id, clock=clock)
        if change is not None:
            return change
        account = await Account.get(id=account_id)
    return Change(balance=balance_of(account))


async def due_account_ids(*, clock: Clock, limit: int = 500) -> list[int]:
    """Accounts whose next subscription month has started (for the background sweep)."""
    due = await Account.filter(next_period_at__lte=clock.now()).limit(limit).only("id")
    return [account.id for account in due]
