"""Monthly allotments: at each subscription month's start, expire what is left and grant anew.

Months are anchored at the account's creation instant (services/periods.py). The
ledger applies a month that has started before any change of the account
(`ledger.commit`), as a change of its own; the background sweep of `tally serve`
applies it for accounts nobody touches. A `SubscriptionPeriod` row per account and
period, under a unique key, makes each grant exactly-once even with concurrent
requests and several processes: the account lock serialises them, and the unique key
is the backstop if anything ever bypassed the lock.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from models import Account
from models.enums import CreditBucket, LedgerEntryKind
from services import sql
from services.balance import Posting
from services.clock import Clock
from services.periods import period_at, period_by_index, period_start

if TYPE_CHECKING:
    from services.ledger import Tx

_INSERT_PERIOD = (
    'INSERT INTO subscription_period (account_id, "index", starts_at, ends_at, granted,'
    " expired, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def is_due(account: Account, now: datetime) -> bool:
    """Whether a subscription month has started since the account's last grant."""
    return period_at(account.created_at, now).index > account.period_index


async def grant_first_month(tx: Tx) -> None:
    """Period 0's grant, for a new account, inside its creating transaction."""
    account = tx.account
    await _record_period(tx, index=0, expired=0)
    account.next_period_at = period_by_index(account.created_at, 0).end
    await tx.post(_grant(account))


async def apply_due_months(tx: Tx) -> None:
    """Catch the locked account up to the current month: one expiry + grant pair per month.

    Missed months are caught up one by one, each with its own pair, so the ledger
    tells every month's story.
    """
    account = tx.account
    current = period_at(account.created_at, tx.now).index
    while account.period_index < current:
        ended, index = account.period_index, account.period_index + 1
        left = account.subscription_credits
        await _record_period(tx, index=index, expired=left)
        if left > 0:
            expiry = Posting(LedgerEntryKind.ALLOTMENT_EXPIRY, CreditBucket.SUBSCRIPTION, -left)
            await tx.post(expiry, period_index=ended)
        account.period_index = index
        await tx.post(_grant(account))
    account.next_period_at = period_start(account.created_at, account.period_index + 1)


def _grant(account: Account) -> Posting:
    return Posting(
        LedgerEntryKind.ALLOTMENT_GRANT, CreditBucket.SUBSCRIPTION, account.monthly_credits
    )


async def _record_period(tx: Tx, *, index: int, expired: int) -> None:
    account = tx.account
    period = period_by_index(account.created_at, index)
    values = [account.id, index, period.start, period.end, account.monthly_credits, expired, tx.now]
    await sql.run(tx.conn, _INSERT_PERIOD, values)


async def due_account_ids(*, clock: Clock, limit: int = 500) -> list[int]:
    """Accounts whose next subscription month has started (for the background sweep)."""
    due = await Account.filter(next_period_at__lte=clock.now()).limit(limit).only("id")
    return [account.id for account in due]
