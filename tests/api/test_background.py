from __future__ import annotations

import asyncio
from datetime import timedelta

from api.background import allotment_sweeper, sweep_due_allotments
from api.runtime import Runtime
from models import Account, LedgerEntry, SubscriptionPeriod
from models.enums import LedgerEntryKind
from services.accounts import NewAccount
from services.clock import FrozenClock


async def test_sweep_grants_the_new_month_to_untouched_accounts(
    account: NewAccount, runtime: Runtime, clock: FrozenClock
) -> None:
    # given an account nobody touches, one day into its second month
    clock.advance(timedelta(days=32))
    # when the sweep runs twice
    first = await sweep_due_allotments(runtime)
    second = await sweep_due_allotments(runtime)
    # then the month's expiry and grant were applied once
    assert (first, second) == (1, 0)
    row = await Account.get(id=account.account.id)
    assert (row.period_index, row.subscription_credits) == (1, 1000)
    kinds = [e.kind for e in await LedgerEntry.filter(account_id=row.id).order_by("id")]
    assert kinds == [
        LedgerEntryKind.ALLOTMENT_GRANT,
        LedgerEntryKind.ALLOTMENT_EXPIRY,
        LedgerEntryKind.ALLOTMENT_GRANT,
    ]


async def test_sweep_announces_the_change_after_commit(
    account: NewAccount, runtime: Runtime, clock: FrozenClock
) -> None:
    events = runtime.broker.subscribe(account.account.id)
    next_event = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    clock.advance(timedelta(days=32))
    await sweep_due_allotments(runtime)
    event = await asyncio.wait_for(next_event, 1)
    assert event is not None
    assert event.balance.subscription == 1000
    assert len(event.entry_ids) == 2
    await events.aclose()


async def test_sweeper_runs_in_the_background_until_stopped(
    account: NewAccount, runtime: Runtime, clock: FrozenClock
) -> None:
    clock.advance(timedelta(days=95))
    async with allotment_sweeper(runtime, interval=0.01):
        for _ in range(200):
            if await SubscriptionPeriod.filter(account_id=account.account.id).count() == 4:
                break
            await asyncio.sleep(0.01)
    assert await SubscriptionPeriod.filter(account_id=account.account.id).count() == 4
