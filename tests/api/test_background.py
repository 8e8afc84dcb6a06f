from __future__ import annotations

import asyncio
from datetime import timedelta

from api.background import allotment_sweeper, sweep_due_allotments
from models import Account, LedgerEntry, SubscriptionPeriod
from models.enums import LedgerEntryKind
from services.accounts import NewAccount
from services.auto_recharge import CLAIM_TIMEOUT
from services.clock import FrozenClock
from services.payments import SimulatedPaymentProvider, set_payment_method
from services.runtime import Runtime
from tests.services.conftest import enable_auto_recharge, open_inbox, principal
from tests.services.test_auto_recharge import (
    DyingAfterCharge,
    assert_recharged_once,
    die_mid_recharge,
    recharges,
)


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


async def test_sweeper_settles_a_recharge_a_stopped_process_left_charged(
    account: NewAccount, runtime: Runtime, clock: FrozenClock, payments: SimulatedPaymentProvider
) -> None:
    # given a send whose auto-recharge was charged but died before its ledger entry
    admin = principal(account)
    inbox = await open_inbox(admin, clock)
    await set_payment_method(actor=admin, token="tok_visa", provider=payments, clock=clock)
    runtime.payments = DyingAfterCharge(payments.charges)
    await die_mid_recharge(runtime, admin, inbox)
    runtime.payments = payments
    # when the sweeper runs once the recharge's claim has timed out
    clock.advance(CLAIM_TIMEOUT + timedelta(seconds=1))
    async with allotment_sweeper(runtime, interval=0.01):
        for _ in range(500):
            row = await Account.get(id=account.account.id)
            if row.auto_recharge_claimed_at is None and await recharges(account.account.id):
                break
            await asyncio.sleep(0.01)
    # then the charge is credited, once, and the account's claim released
    await assert_recharged_once(account.account.id, payments)


async def test_a_new_month_applied_by_the_sweep_triggers_auto_recharge(
    account: NewAccount, runtime: Runtime, clock: FrozenClock, payments: SimulatedPaymentProvider
) -> None:
    # given 1,000 monthly credits and auto-recharge below 1,001
    admin = principal(account)
    await set_payment_method(actor=admin, token="tok_visa", provider=payments, clock=clock)
    await enable_auto_recharge(admin, runtime, threshold=1001, credits=500)
    # when the sweep applies the next month (1,000 expire, 1,000 granted)
    clock.advance(timedelta(days=31))
    assert await sweep_due_allotments(runtime) == 1
    # then that change recharged
    assert len(await recharges(account.account.id)) == 1
