"""Auto-recharge: its settings, when it buys, how often, what a decline does, and crashes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from models import Account, Inbox, LedgerEntry
from models.credits import AutoRecharge, RechargeState
from models.enums import CreditBucket, LedgerEntryKind, Role
from services import auto_recharge
from services.access import Principal
from services.accounts import NewAccount
from services.auto_recharge import (
    CLAIM_TIMEOUT,
    auto_recharge_state,
    complete_all_stalled_recharges,
    complete_stalled_recharges,
    maybe_auto_recharge,
    update_auto_recharge,
)
from services.billing import current_balance
from services.clock import FrozenClock
from services.errors import (
    Forbidden,
    InsufficientCredits,
    InvalidValue,
    PaymentDeclined,
    PaymentMethodRequired,
)
from services.messaging import Sent
from services.payments import Charge, SimulatedPaymentProvider, set_payment_method
from services.runtime import Runtime
from tests.services.conftest import (
    Buckets,
    EventReader,
    assert_ledger_balances,
    body_of,
    buckets,
    buy,
    enable_auto_recharge,
    ledger,
    open_shop,
    receive,
    report,
    send,
)

RECHARGE = LedgerEntryKind.AUTO_RECHARGE

pytestmark = pytest.mark.usefixtures("db")


async def recharges(account_id: int) -> list[LedgerEntry]:
    return await LedgerEntry.filter(account_id=account_id, kind=RECHARGE).order_by("id")


async def recharge_now(runtime: Runtime, account_id: int):
    return await maybe_auto_recharge(
        account_id=account_id,
        runtime=runtime,
    )


async def use_declining_card(actor: Principal, runtime: Runtime) -> None:
    await set_payment_method(
        actor=actor, token="tok_chargeDeclined", provider=runtime.payments, clock=runtime.clock
    )


# Settings


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threshold_credits", -1),
        ("threshold_credits", 1_000_001),
        ("recharge_credits", 99),
        ("recharge_credits", 1_000_001),
        ("max_recharges_per_period", 0),
        ("max_recharges_per_period", 101),
    ],
)
async def test_out_of_range_settings_are_invalid_and_change_nothing(
    account: NewAccount, admin: Principal, runtime: Runtime, card, field: str, value: int
) -> None:
    with pytest.raises(InvalidValue) as caught:
        await update_auto_recharge(actor=admin, enabled=True, clock=runtime.clock, **{field: value})
    assert (caught.value.code, caught.value.field) == ("INVALID_VALUE", field)
    assert not (await Account.get(id=account.account.id)).auto_recharge_enabled


@pytest.mark.parametrize(
    ("threshold", "credits", "max_per_period"), [(0, 100, 1), (1_000_000, 1_000_000, 100)]
)
async def test_settings_at_the_edges_of_their_ranges_are_accepted(
    admin: Principal, runtime: Runtime, card, threshold: int, credits: int, max_per_period: int
) -> None:
    state = await enable_auto_recharge(
        admin, runtime, threshold=threshold, credits=credits, max_per_period=max_per_period
    )
    assert (state.enabled, state.threshold_credits, state.recharge_credits) == (
        True,
        threshold,
        credits,
    )
    assert state.max_recharges_per_period == max_per_period


async def test_enabling_needs_a_payment_method(
    account: NewAccount, admin: Principal, runtime
) -> None:
    with pytest.raises(PaymentMethodRequired) as caught:
        await enable_auto_recharge(admin, runtime, threshold=100)
    assert caught.value.field == "enabled"
    assert not (await Account.get(id=account.account.id)).auto_recharge_enabled
    # while turning it off needs none
    state = await update_auto_recharge(actor=admin, enabled=False, clock=runtime.clock)
    assert not state.enabled


async def test_a_member_may_not_change_auto_recharge(admin: Principal, runtime, card) -> None:
    member = Principal(admin.account_id, admin.member_id, Role.MEMBER, admin.token_id)
    with pytest.raises(Forbidden):
        await enable_auto_recharge(member, runtime, threshold=100)


async def test_a_recharge_whose_amount_passes_the_contracts_int_is_refused(
    account: NewAccount, admin: Principal, runtime: Runtime, card
) -> None:
    # given an account priced at 5,000 cents a credit before prices were capped
    await Account.filter(id=account.account.id).update(price_per_credit_cents=5000)
    # when an admin asks for recharges of 1,000,000 credits (5,000,000,000 cents)
    with pytest.raises(InvalidValue) as caught:
        await enable_auto_recharge(admin, runtime, threshold=100, credits=1_000_000)
    # then it is refused on that field, naming the most it allows, and nothing changed
    assert caught.value.field == "recharge_credits"
    assert "at most 429,496 credits" in caught.value.message
    assert not (await Account.get(id=account.account.id)).auto_recharge_enabled


async def test_a_recharge_set_before_the_price_cap_whose_amount_cannot_be_recorded_never_charges(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, payments, card
) -> None:
    # given recharges of 1,000,000 credits, then a price that makes them pass the Int
    await enable_auto_recharge(admin, runtime, threshold=1000, credits=1_000_000)
    await Account.filter(id=account.account.id).update(price_per_credit_cents=5000)
    # when a send leaves the total below the threshold
    await send(runtime, admin, inbox, "Hello")
    # then the card is never charged for credits the ledger could not record
    assert payments.charges == {}
    assert await AutoRecharge.filter(account_id=account.account.id).count() == 0
    assert await buckets(account.account.id) == Buckets(999, 0)


# When it buys


async def test_a_send_leaving_the_total_below_the_threshold_recharges(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, payments, card
) -> None:
    # given auto-recharge of 500 credits below 1000
    await enable_auto_recharge(admin, runtime, threshold=1000, credits=500)
    # when a send leaves 999
    sent = await send(runtime, admin, inbox, "Hello")
    # then 500 credits were bought into PURCHASED, at 2 cents each
    [entry] = await recharges(account.account.id)
    assert (entry.bucket, entry.credits, entry.amount_cents) == (CreditBucket.PURCHASED, 500, 1000)
    assert [c.amount_cents for c in payments.charges.values()] == [1000]
    assert (sent.balance.subscription, sent.balance.purchased) == (999, 500)
    assert await buckets(account.account.id) == Buckets(999, 500)


async def test_an_inbound_message_leaving_the_total_below_the_threshold_recharges(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, card
) -> None:
    await enable_auto_recharge(admin, runtime, threshold=1000, credits=500)
    await receive(runtime, inbox, "Hi")
    assert len(await recharges(account.account.id)) == 1


async def test_a_purchase_leaving_the_total_below_the_threshold_recharges(
    account: NewAccount, admin: Principal, runtime: Runtime, card
) -> None:
    # given 1,000 credits and a threshold of 1,200
    await enable_auto_recharge(admin, runtime, threshold=1200, credits=500)
    # when 100 credits are bought: 1,100 is still below it
    bought = await buy(runtime, admin, 100)
    # then the purchase triggered the recharge, and answers the balance after it
    assert len(await recharges(account.account.id)) == 1
    assert (bought.balance.subscription, bought.balance.purchased) == (1000, 600)
    assert await buckets(account.account.id) == Buckets(1000, 600)


async def test_a_refund_leaving_the_total_below_the_threshold_recharges(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, card
) -> None:
    # given a sent message (999 left), then a threshold of 1,001
    sent = await send(runtime, admin, inbox, "Hello")
    await enable_auto_recharge(admin, runtime, threshold=1001, credits=500)
    # when the carrier reports it failed: the refund leaves 1,000
    await report(runtime, sent.message, delivered=False)
    # then
    assert len(await recharges(account.account.id)) == 1
    assert await buckets(account.account.id) == Buckets(1000, 500)


async def test_a_new_month_leaving_the_total_below_the_threshold_recharges(
    account: NewAccount, admin: Principal, runtime: Runtime, clock: FrozenClock, card
) -> None:
    # given 1,000 monthly credits and a threshold of 1,001
    await enable_auto_recharge(admin, runtime, threshold=1001, credits=500)
    # when the next month is applied by a balance read: 1,000 expire, 1,000 are granted
    clock.advance(timedelta(days=31))
    balance = await current_balance(
        account_id=account.account.id,
        runtime=runtime,
    )
    # then the new month triggered the recharge, and the read shows it
    assert len(await recharges(account.account.id)) == 1
    assert (balance.subscription, balance.purchased) == (1000, 500)


async def test_turning_auto_recharge_on_below_the_threshold_waits_for_a_change(
    account: NewAccount, admin: Principal, runtime: Runtime, payments, card
) -> None:
    # given 1,000 credits, when auto-recharge is turned on with a threshold of 1,001
    await enable_auto_recharge(admin, runtime, threshold=1001, credits=500)
    # then nothing is bought: the settings are not a change of the balance
    assert await recharges(account.account.id) == []
    assert payments.charges == {}


async def test_no_recharge_while_the_total_stays_at_or_above_the_threshold(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, payments, card
) -> None:
    await enable_auto_recharge(admin, runtime, threshold=999, credits=500)
    await send(runtime, admin, inbox, "Hello")
    assert await recharges(account.account.id) == []
    assert payments.charges == {}


async def test_disabled_auto_recharge_never_buys(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, card
) -> None:
    await enable_auto_recharge(admin, runtime, threshold=1000)
    await update_auto_recharge(actor=admin, enabled=False, clock=runtime.clock)
    await send(runtime, admin, inbox, "Hello")
    assert await recharges(account.account.id) == []


async def test_at_most_one_recharge_per_triggering_change(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, payments, card
) -> None:
    # given a threshold one recharge cannot reach
    await enable_auto_recharge(admin, runtime, threshold=1_000_000, credits=100, max_per_period=10)
    await send(runtime, admin, inbox, "Hello")
    # when asked again with no new change (the recharge itself is no trigger)
    again = await recharge_now(runtime, account.account.id)
    # then
    assert again is None
    assert len(await recharges(account.account.id)) == 1
    assert len(payments.charges) == 1
    # while the next change triggers its own
    await send(runtime, admin, inbox, "Hello again")
    assert len(await recharges(account.account.id)) == 2


async def test_at_most_max_recharges_per_subscription_month_and_the_count_resets(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, clock: FrozenClock, card
) -> None:
    # given at most 2 recharges a month, each far from enough
    await enable_auto_recharge(admin, runtime, threshold=1_000_000, credits=100, max_per_period=2)
    # when three changes each leave the total below the threshold
    for _ in range(3):
        await send(runtime, admin, inbox, "Hello")
    # then only two recharges happened this month
    assert [e.period_index for e in await recharges(account.account.id)] == [0, 0]
    row = await Account.get(id=account.account.id)
    assert (await auto_recharge_state(row, clock=clock)).recharges_this_period == 2
    # and in the next month the count starts again
    clock.advance(timedelta(days=31))
    assert (await auto_recharge_state(row, clock=clock)).recharges_this_period == 0
    await send(runtime, admin, inbox, "Hello")
    assert [e.period_index for e in await recharges(account.account.id)] == [0, 0, 1]


async def test_a_send_short_of_credits_recharges_first_and_then_succeeds(runtime: Runtime) -> None:
    # given 2 credits and an auto-recharge whose threshold alone would never fire
    shop = await open_shop(runtime, monthly_credits=2, token="tok_visa")
    await enable_auto_recharge(shop.actor, runtime, threshold=0, credits=100)
    # when a 3-credit message is sent
    sent = await send(runtime, shop.actor, shop.inbox, body_of(3))
    # then credits were bought before the message was charged
    kinds = [(e.kind, e.bucket, e.credits) for e in await ledger(shop.id)]
    assert kinds[1:] == [
        (RECHARGE, CreditBucket.PURCHASED, 100),
        (LedgerEntryKind.OUTBOUND_MESSAGE, CreditBucket.SUBSCRIPTION, -2),
        (LedgerEntryKind.OUTBOUND_MESSAGE, CreditBucket.PURCHASED, -1),
    ]
    assert (sent.balance.subscription, sent.balance.purchased) == (0, 99)


async def test_sends_short_of_credits_at_once_share_the_recharge_that_covers_them(
    runtime: Runtime,
) -> None:
    # given 2 credits and a 100-credit auto-recharge
    shop = await open_shop(runtime, monthly_credits=2, token="tok_visa")
    await enable_auto_recharge(shop.actor, runtime, threshold=0, credits=100, max_per_period=5)
    # when five 3-credit sends arrive at once
    sends = [send(runtime, shop.actor, shop.inbox, body_of(3)) for _ in range(5)]
    results = await asyncio.gather(*sends, return_exceptions=True)
    # then the one recharge covers them all: none is refused, none recharges again
    assert [type(result) for result in results] == [Sent] * 5
    assert len(await recharges(shop.id)) == 1
    assert await buckets(shop.id) == Buckets(0, 87)


async def test_a_send_short_of_credits_with_no_recharge_left_is_insufficient(
    runtime: Runtime,
) -> None:
    # given 2 credits and this month's only recharge already used
    shop = await open_shop(runtime, monthly_credits=2, token="tok_visa")
    await enable_auto_recharge(shop.actor, runtime, threshold=0, credits=100, max_per_period=1)
    await send(runtime, shop.actor, shop.inbox, body_of(3))
    await receive(runtime, shop.inbox, "a" * 153 * 90)
    # when a send needs more than the 9 credits left
    with pytest.raises(InsufficientCredits):
        await send(runtime, shop.actor, shop.inbox, body_of(10))
    # then no second recharge, and nothing was charged for the message
    assert len(await recharges(shop.id)) == 1
    assert await buckets(shop.id) == Buckets(0, 9)


# Declines


async def test_a_declined_recharge_sets_last_failure_and_writes_no_entry(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, payments
) -> None:
    # given auto-recharge on a card that declines
    await use_declining_card(admin, runtime)
    await enable_auto_recharge(admin, runtime, threshold=1000)
    # when a send triggers it
    await send(runtime, admin, inbox, "Hello")
    # then
    row = await Account.get(id=account.account.id)
    state = await auto_recharge_state(row, clock=runtime.clock)
    assert state.last_failure == PaymentDeclined("The card was declined.").message
    assert state.enabled
    assert await recharges(account.account.id) == []
    assert payments.charges == {}
    assert await buckets(account.account.id) == Buckets(999, 0)
    # and nothing is left pending
    [recharge] = await AutoRecharge.filter(account_id=account.account.id)
    assert (recharge.state, recharge.failure) == (RechargeState.DECLINED, state.last_failure)
    assert row.auto_recharge_claimed_at is None


async def test_three_declines_in_a_row_turn_auto_recharge_off(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    await use_declining_card(admin, runtime)
    await enable_auto_recharge(admin, runtime, threshold=1000, max_per_period=10)
    enabled = []
    for _ in range(4):
        await send(runtime, admin, inbox, "Hello")
        enabled.append((await Account.get(id=account.account.id)).auto_recharge_enabled)
    assert enabled == [True, True, False, False]
    assert (await Account.get(id=account.account.id)).auto_recharge_failures == 3


async def test_a_successful_recharge_breaks_the_run_of_declines(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    # given two declines
    await use_declining_card(admin, runtime)
    await enable_auto_recharge(admin, runtime, threshold=1_000_000, credits=100, max_per_period=10)
    await send(runtime, admin, inbox, "1")
    await send(runtime, admin, inbox, "2")
    # when one recharge succeeds, then two more decline
    await set_payment_method(
        actor=admin, token="tok_visa", provider=runtime.payments, clock=runtime.clock
    )
    await send(runtime, admin, inbox, "3")
    await use_declining_card(admin, runtime)
    await send(runtime, admin, inbox, "4")
    await send(runtime, admin, inbox, "5")
    # then it is still on: the declines were not three in a row
    row = await Account.get(id=account.account.id)
    assert (row.auto_recharge_enabled, row.auto_recharge_failures) == (True, 2)
    assert len(await recharges(account.account.id)) == 1


class DisablingProvider(SimulatedPaymentProvider):
    """Declines, after the admin turned auto-recharge off while the charge was in flight."""

    admin: Principal
    runtime: Runtime

    async def charge(
        self, *, reference: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        await update_auto_recharge(actor=self.admin, enabled=False, clock=self.runtime.clock)
        raise PaymentDeclined("The card was declined.")


async def test_a_decline_does_not_turn_back_on_what_the_admin_turned_off(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, card
) -> None:
    # given the admin turns auto-recharge off while a charge is being declined
    await enable_auto_recharge(admin, runtime, threshold=1000)
    provider = DisablingProvider()
    provider.admin, provider.runtime = admin, runtime
    runtime.payments = provider
    # when
    await send(runtime, admin, inbox, "Hello")
    # then it stays off, with the decline recorded
    row = await Account.get(id=account.account.id)
    assert (row.auto_recharge_enabled, row.auto_recharge_failures) == (False, 1)


class MonthEndingDecliner(SimulatedPaymentProvider):
    """Declines each charge, taking long enough for the subscription month to end."""

    clock: FrozenClock
    attempts: int = 0

    async def charge(
        self, *, reference: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        self.attempts += 1
        self.clock.advance(timedelta(days=31))
        raise PaymentDeclined("The card was declined.")


async def test_a_decline_committed_with_a_new_month_is_not_retried_at_once(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, clock: FrozenClock,
    card,
) -> None:  # fmt: skip
    # given 1,000 monthly credits, a threshold of 1,001, and a card that declines while
    # the month ends, so the decline's change also applies the new month (total 1,000)
    await enable_auto_recharge(admin, runtime, threshold=1001, credits=500, max_per_period=10)
    provider = MonthEndingDecliner()
    provider.clock = clock
    runtime.payments = provider
    # when a send triggers a recharge
    await send(runtime, admin, inbox, "Hello")
    # then the card was asked once: the decline answers the low balance until the next change
    assert provider.attempts == 1
    assert await AutoRecharge.filter(account_id=account.account.id).count() == 1
    row = await Account.get(id=account.account.id)
    assert (row.subscription_credits, row.auto_recharge_failures) == (1000, 1)
    # and the next change triggers it again
    await send(runtime, admin, inbox, "Hello")
    assert provider.attempts == 2


# Concurrency and events


async def test_concurrent_triggers_recharge_once(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, payments, card
) -> None:
    # given a change that left the total below the threshold, and auto-recharge turned on after
    await send(runtime, admin, inbox, "Hello")
    await enable_auto_recharge(admin, runtime, threshold=1_000_000, credits=100, max_per_period=100)
    # when 20 triggers for it run at once
    results = await asyncio.gather(*(recharge_now(runtime, account.account.id) for _ in range(20)))
    # then one recharge ran
    assert sum(result is not None for result in results) == 1
    assert len(await recharges(account.account.id)) == 1
    assert len(payments.charges) == 1
    assert await buckets(account.account.id) == Buckets(999, 100)
    assert (await Account.get(id=account.account.id)).auto_recharge_claimed_at is None


async def test_a_send_and_its_recharge_are_announced_in_order(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, card
) -> None:
    await enable_auto_recharge(admin, runtime, threshold=1000, credits=500)
    reader = EventReader(runtime, account.account.id)
    await reader.start()
    await send(runtime, admin, inbox, "Hello")
    sent, recharged = await reader.next(), await reader.next()
    [send_entry, recharge_entry] = (await ledger(account.account.id))[1:]
    assert (list(sent.entry_ids), list(recharged.entry_ids)) == (
        [send_entry.id],
        [recharge_entry.id],
    )
    assert (sent.balance.total, recharged.balance.total) == (999, 1499)
    assert not await reader.pending()
    await reader.close()


# Crashes between the charge and its ledger entry


class ProcessDied(BaseException):
    """The process stops here: no handler of the code under test runs after it."""


class DyingAfterCharge(SimulatedPaymentProvider):
    """Charges (the provider keeps the charge), then the process dies before the answer lands."""

    async def charge(
        self, *, reference: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        await super().charge(
            reference=reference,
            amount_cents=amount_cents,
            currency=currency,
            idempotency_key=idempotency_key,
        )
        raise ProcessDied


class DyingBeforeCharge(SimulatedPaymentProvider):
    """The process dies before its charge reaches the provider."""

    async def charge(
        self, *, reference: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        raise ProcessDied


class StalledCharge(SimulatedPaymentProvider):
    """A charging process stuck past the claim's timeout, before or after its charge is made."""

    def __init__(self, charges: dict[str, Charge], *, charge_first: bool) -> None:
        super().__init__(charges)
        self.charge_first = charge_first
        self.stuck = asyncio.Event()
        self.resume = asyncio.Event()

    async def charge(
        self, *, reference: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        if self.charge_first:
            await self._charge_once(reference, amount_cents, currency, idempotency_key)
        self.stuck.set()
        await self.resume.wait()
        return await self._charge_once(reference, amount_cents, currency, idempotency_key)

    async def _charge_once(self, reference: str, amount: int, currency: str, key: str) -> Charge:
        return await super().charge(
            reference=reference, amount_cents=amount, currency=currency, idempotency_key=key
        )


async def _die_in_the_ledger_transaction(*args: object, **kwargs: object) -> None:
    raise ProcessDied


@dataclass
class Crash:
    """A fault that kills a recharge between its charge and its ledger entry."""

    restart: Callable[[], None]
    """Bring up a process without the fault (the provider keeps its charges)."""


@pytest.fixture(params=["after the charge", "inside the ledger transaction"])
def crash(
    request: pytest.FixtureRequest,
    runtime: Runtime,
    payments: SimulatedPaymentProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> Crash:
    if request.param == "after the charge":
        runtime.payments = DyingAfterCharge(payments.charges)
    else:
        monkeypatch.setattr(auto_recharge, "_mark_credited", _die_in_the_ledger_transaction)

    def restart() -> None:
        runtime.payments = payments
        monkeypatch.undo()

    return Crash(restart)


async def recover(runtime: Runtime, account_id: int) -> int:
    return await complete_stalled_recharges(
        account_id=account_id,
        runtime=runtime,
    )


async def sweep(runtime: Runtime) -> int:
    return await complete_all_stalled_recharges(
        runtime=runtime,
    )


async def die_mid_recharge(runtime: Runtime, admin: Principal, inbox: Inbox) -> None:
    """A send leaves 999 credits, below the 1,000 threshold: its 500-credit recharge dies."""
    await enable_auto_recharge(admin, runtime, threshold=1000, credits=500)
    with pytest.raises(ProcessDied):
        await send(runtime, admin, inbox, "Hello")


async def assert_recharged_once(account_id: int, payments: SimulatedPaymentProvider) -> None:
    [charge] = payments.charges.values()
    [entry] = await recharges(account_id)
    assert (entry.bucket, entry.credits, entry.amount_cents) == (
        CreditBucket.PURCHASED,
        500,
        charge.amount_cents,
    )
    [recharge] = await AutoRecharge.filter(account_id=account_id)
    assert (recharge.state, recharge.entry_id) == (RechargeState.CREDITED, entry.id)
    assert (await Account.get(id=account_id)).auto_recharge_claimed_at is None
    await assert_ledger_balances(account_id)


async def test_a_crash_between_charge_and_entry_leaves_a_pending_recharge_and_no_credit(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, payments, card, crash
) -> None:
    await die_mid_recharge(runtime, admin, inbox)
    assert len(payments.charges) == 1
    assert await recharges(account.account.id) == []
    assert await buckets(account.account.id) == Buckets(999, 0)
    [recharge] = await AutoRecharge.filter(account_id=account.account.id)
    assert recharge.state is RechargeState.PENDING
    assert recharge.charge_key in payments.charges


async def test_the_next_trigger_after_the_claim_timed_out_credits_the_charge_once(
    account: NewAccount,
    admin: Principal,
    inbox: Inbox,
    runtime: Runtime,
    clock: FrozenClock,
    payments,
    card,
    crash,
) -> None:
    # given a recharge that died after its charge
    await die_mid_recharge(runtime, admin, inbox)
    crash.restart()
    # when the claim has timed out and the next send triggers auto-recharge
    clock.advance(CLAIM_TIMEOUT + timedelta(seconds=1))
    await send(runtime, admin, inbox, "Hello again")
    # then the charge made before the crash is credited, and nothing is charged again
    await assert_recharged_once(account.account.id, payments)
    assert await buckets(account.account.id) == Buckets(998, 500)


async def test_a_stalled_recharge_is_left_to_its_process_until_the_claim_times_out(
    account: NewAccount,
    admin: Principal,
    inbox: Inbox,
    runtime: Runtime,
    clock: FrozenClock,
    payments,
    card,
    crash,
) -> None:
    await die_mid_recharge(runtime, admin, inbox)
    crash.restart()
    clock.advance(CLAIM_TIMEOUT - timedelta(seconds=1))
    assert await recover(runtime, account.account.id) == 0
    assert await sweep(runtime) == 0
    await send(runtime, admin, inbox, "Hello again")
    assert await recharges(account.account.id) == []
    assert len(payments.charges) == 1
    [recharge] = await AutoRecharge.filter(account_id=account.account.id)
    assert recharge.state is RechargeState.PENDING


async def test_the_background_sweep_credits_a_stalled_recharge_and_announces_it(
    account: NewAccount,
    admin: Principal,
    inbox: Inbox,
    runtime: Runtime,
    clock: FrozenClock,
    payments,
    card,
    crash,
) -> None:
    # given a recharge that died after its charge, on an account nobody touches since
    await die_mid_recharge(runtime, admin, inbox)
    crash.restart()
    reader = EventReader(runtime, account.account.id)
    await reader.start()
    # when the sweep runs after the claim timed out
    clock.advance(CLAIM_TIMEOUT + timedelta(seconds=1))
    assert await sweep(runtime) == 1
    # then the charge is credited once, live subscribers see it, and a second sweep finds nothing
    await assert_recharged_once(account.account.id, payments)
    event = await reader.next()
    [entry] = await recharges(account.account.id)
    assert (list(event.entry_ids), event.balance.total) == ([entry.id], 1499)
    assert await sweep(runtime) == 0
    await reader.close()


async def test_a_recharge_that_died_before_charging_is_dropped_and_the_next_one_charges(
    account: NewAccount,
    admin: Principal,
    inbox: Inbox,
    runtime: Runtime,
    clock: FrozenClock,
    payments,
    card,
) -> None:
    # given a recharge whose process died before the provider saw its charge
    runtime.payments = DyingBeforeCharge(payments.charges)
    await die_mid_recharge(runtime, admin, inbox)
    runtime.payments = payments
    # when it is recovered
    clock.advance(CLAIM_TIMEOUT + timedelta(seconds=1))
    assert await recover(runtime, account.account.id) == 1
    # then nothing was charged or credited, and nothing is pending
    [dropped] = await AutoRecharge.filter(account_id=account.account.id)
    assert dropped.state is RechargeState.NOT_CHARGED
    assert (payments.charges, await recharges(account.account.id)) == ({}, [])
    assert (await Account.get(id=account.account.id)).auto_recharge_claimed_at is None
    # while the next change recharges as usual
    await send(runtime, admin, inbox, "Hello again")
    assert len(await recharges(account.account.id)) == 1
    assert len(payments.charges) == 1


async def test_recoveries_and_triggers_at_once_credit_the_charge_once(
    account: NewAccount,
    admin: Principal,
    inbox: Inbox,
    runtime: Runtime,
    clock: FrozenClock,
    payments,
    card,
    crash,
) -> None:
    # given a recharge that died after its charge, and the claim timed out
    await die_mid_recharge(runtime, admin, inbox)
    crash.restart()
    clock.advance(CLAIM_TIMEOUT + timedelta(seconds=1))
    # when recoveries, sweeps and triggers all run at once
    account_id = account.account.id
    found = await asyncio.gather(
        *(recover(runtime, account_id) for _ in range(4)),
        *(sweep(runtime) for _ in range(4)),
        *(recharge_now(runtime, account_id) for _ in range(4)),
    )
    # then exactly one of them settled it, and it was credited once
    assert sorted(found[:8]) == [0] * 7 + [1]
    await assert_recharged_once(account_id, payments)
    assert await buckets(account_id) == Buckets(999, 500)


async def test_a_recovery_credits_a_stuck_process_charge_and_the_process_adds_nothing(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, clock: FrozenClock, card
) -> None:
    # given a charging process stuck past the claim's timeout after its charge
    runtime.payments = provider = StalledCharge({}, charge_first=True)
    await send(runtime, admin, inbox, "Hello")
    await enable_auto_recharge(admin, runtime, threshold=1_000_000, credits=500)
    process = asyncio.create_task(recharge_now(runtime, account.account.id))
    await provider.stuck.wait()
    clock.advance(CLAIM_TIMEOUT + timedelta(seconds=1))
    # when a recovery credits the charge, and then the process resumes
    assert await recover(runtime, account.account.id) == 1
    provider.resume.set()
    # then the process adds nothing more
    assert await process is None
    await assert_recharged_once(account.account.id, provider)


async def test_a_charge_made_after_a_recovery_gave_up_is_credited_by_its_process(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, clock: FrozenClock, card
) -> None:
    # given a charging process stuck past the claim's timeout before its charge
    runtime.payments = provider = StalledCharge({}, charge_first=False)
    await send(runtime, admin, inbox, "Hello")
    await enable_auto_recharge(admin, runtime, threshold=1_000_000, credits=500)
    process = asyncio.create_task(recharge_now(runtime, account.account.id))
    await provider.stuck.wait()
    clock.advance(CLAIM_TIMEOUT + timedelta(seconds=1))
    # when a recovery finds no charge, and then the process charges after all
    assert await recover(runtime, account.account.id) == 1
    [recharge] = await AutoRecharge.filter(account_id=account.account.id)
    assert recharge.state is RechargeState.NOT_CHARGED
    provider.resume.set()
    # then the process credits its charge, once
    assert await process is not None
    await assert_recharged_once(account.account.id, provider)
