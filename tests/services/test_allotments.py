"""Monthly allotments, with time travel through the injected clock (never by sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models import Account, LedgerEntry, SubscriptionPeriod
from models.enums import CreditBucket, LedgerEntryKind
from services import ledger as ledger_door
from services.access import Principal
from services.accounts import NewAccount
from services.allotments import due_account_ids
from services.balance import Change
from services.clock import FrozenClock
from services.runtime import Runtime
from tests.services.conftest import (
    assert_ledger_balances,
    body_of,
    buy,
    ledger,
    open_account,
    send,
)

GRANT, EXPIRY = LedgerEntryKind.ALLOTMENT_GRANT, LedgerEntryKind.ALLOTMENT_EXPIRY
MICROSECOND = timedelta(microseconds=1)

pytestmark = pytest.mark.usefixtures("db")


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 15, 0, tzinfo=UTC)


async def period_starts(account_id: int) -> list[datetime]:
    rows = await SubscriptionPeriod.filter(account_id=account_id).order_by("index")
    return [row.starts_at for row in rows]


async def allotments(account_id: int) -> list[tuple[LedgerEntryKind, int, int]]:
    """(kind, credits, period_index) of the expiry and grant entries, in order."""
    return [
        (e.kind, e.credits, e.period_index)
        for e in await ledger(account_id)
        if e.kind in (GRANT, EXPIRY)
    ]


@pytest.mark.parametrize(
    ("anchor", "second", "third"),
    [
        (at(2027, 1, 31), at(2027, 2, 28), at(2027, 3, 31)),
        (at(2028, 1, 31), at(2028, 2, 29), at(2028, 3, 31)),
    ],
    ids=["2027", "leap-2028"],
)
async def test_a_jan_31_anchor_grants_on_the_last_of_february_then_on_mar_31(
    clock: FrozenClock, anchor: datetime, second: datetime, third: datetime
) -> None:
    # given an account created on Jan 31
    clock.set(anchor)
    new = await open_account(clock)
    account_id = new.account.id
    for start in (second, third):
        # when the clock reaches the instant before the next start, nothing is due
        clock.set(start - MICROSECOND)
        assert await catch_up(account_id, clock=clock) is None
        # when it reaches the start itself, that month is granted
        clock.set(start)
        change = await catch_up(account_id, clock=clock)
        assert change is not None
        assert change.balance.period_start == start
    # then one period row per month, starting at the clamped dates
    assert await period_starts(account_id) == [anchor, second, third]
    assert (await Account.get(id=account_id)).next_period_at == at(anchor.year, 4, 30)


async def test_several_missed_months_each_get_exactly_one_expiry_and_grant(
    account: NewAccount, admin: Principal, inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given 10 credits used in the first month
    await send(runtime, admin, inbox, body_of(10))
    # when nobody touches the account for three months and then it is read
    clock.advance(timedelta(days=92))
    change = await catch_up(account.account.id, clock=clock)
    # then each month's story is told once, in order
    assert change is not None
    assert await allotments(account.account.id) == [
        (GRANT, 1000, 0),
        (EXPIRY, -990, 0),
        (GRANT, 1000, 1),
        (EXPIRY, -1000, 1),
        (GRANT, 1000, 2),
        (EXPIRY, -1000, 2),
        (GRANT, 1000, 3),
    ]
    assert [e.id for e in change.entries] == [e.id for e in (await ledger(account.account.id))[2:]]
    rows = await SubscriptionPeriod.filter(account_id=account.account.id).order_by("index")
    assert [(r.index, r.granted, r.expired) for r in rows] == [
        (0, 1000, 0),
        (1, 1000, 990),
        (2, 1000, 1000),
        (3, 1000, 1000),
    ]
    assert (change.balance.subscription, change.balance.purchased) == (1000, 0)
    await assert_ledger_balances(account.account.id)


async def test_expiry_takes_exactly_what_was_left_and_never_touches_purchased(
    account: NewAccount, admin: Principal, inbox, runtime: Runtime, clock: FrozenClock, card
) -> None:
    # given 993 subscription credits left and 200 purchased
    await buy(runtime, admin, 200)
    await send(runtime, admin, inbox, body_of(7))
    # when the month ends
    clock.advance(timedelta(days=31))
    await catch_up(account.account.id, clock=clock)
    # then
    expiry = await LedgerEntry.get(account_id=account.account.id, kind=EXPIRY)
    assert (expiry.bucket, expiry.credits, expiry.balance_after) == (
        CreditBucket.SUBSCRIPTION,
        -993,
        200,
    )
    row = await Account.get(id=account.account.id)
    assert (row.subscription_credits, row.purchased_credits) == (1000, 200)


async def test_an_empty_subscription_bucket_gets_a_grant_and_no_expiry(
    clock: FrozenClock,
) -> None:
    # given a plan without monthly credits
    new = await open_account(clock, monthly_credits=0)
    # when two months pass
    clock.advance(timedelta(days=62))
    await catch_up(new.account.id, clock=clock)
    # then each month still has its (zero) grant and its period row, and nothing expired
    assert await allotments(new.account.id) == [(GRANT, 0, 0), (GRANT, 0, 1), (GRANT, 0, 2)]
    assert await SubscriptionPeriod.filter(account_id=new.account.id).count() == 3


async def test_the_allotment_is_applied_lazily_before_a_send(
    account: NewAccount, admin: Principal, inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given 5 credits used, then a new month started without anyone touching the account
    await send(runtime, admin, inbox, body_of(5))
    clock.advance(timedelta(days=32))
    # when a message is sent
    sent = await send(runtime, admin, inbox, body_of(2))
    # then the month was renewed first and the message paid from the new grant
    kinds = [(e.kind, e.credits, e.period_index) for e in (await ledger(account.account.id))[2:]]
    assert kinds == [
        (EXPIRY, -995, 0),
        (GRANT, 1000, 1),
        (LedgerEntryKind.OUTBOUND_MESSAGE, -2, 1),
    ]
    assert sent.balance.subscription == 998


async def test_a_balance_read_applies_the_due_allotment_once(
    account: NewAccount, clock: FrozenClock
) -> None:
    # given a new month
    clock.advance(timedelta(days=31))
    # when the balance is read twice
    first = await current_balance_change(account.account.id, clock=clock)
    second = await current_balance_change(account.account.id, clock=clock)
    # then the first read applied the month, the second only read
    assert len(first.entries) == 2
    assert second.entries == ()
    assert first.balance == second.balance
    assert await SubscriptionPeriod.filter(account_id=account.account.id).count() == 2


async def test_catch_up_returns_none_when_nothing_is_due(
    account: NewAccount, clock: FrozenClock
) -> None:
    # when the month has not ended
    clock.advance(timedelta(days=30))
    # then
    assert await catch_up(account.account.id, clock=clock) is None
    assert len(await ledger(account.account.id)) == 1


async def test_catch_up_twice_applies_the_month_once(
    account: NewAccount, clock: FrozenClock
) -> None:
    clock.advance(timedelta(days=31))
    assert await catch_up(account.account.id, clock=clock) is not None
    assert await catch_up(account.account.id, clock=clock) is None
    assert await SubscriptionPeriod.filter(account_id=account.account.id).count() == 2


async def test_due_account_ids_lists_the_accounts_whose_month_started(
    account: NewAccount, clock: FrozenClock
) -> None:
    # given a second account created ten days later
    clock.advance(timedelta(days=10))
    later = await open_account(clock)
    # when the first account's month has started but not the second's
    clock.set(datetime(2026, 2, 15, 12, 0, tzinfo=UTC))
    assert await due_account_ids(clock=clock) == [account.account.id]
    # then once it is caught up nothing is due, until the second one's month starts
    await catch_up(account.account.id, clock=clock)
    assert await due_account_ids(clock=clock) == []
    clock.set(datetime(2026, 2, 25, 12, 0, tzinfo=UTC))
    assert await due_account_ids(clock=clock) == [later.account.id]


async def catch_up(account_id: int, *, clock: FrozenClock) -> Change | None:
    """What the background sweep does for one account."""
    return await ledger_door.catch_up(Runtime(clock=clock), account_id)


async def current_balance_change(account_id: int, *, clock: FrozenClock) -> Change:
    """What a balance read does: a month that has started is applied first."""
    return await ledger_door.balance_now(Runtime(clock=clock), account_id)
