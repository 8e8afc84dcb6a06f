"""Buying credits: the amount range, the saved method, declines and the price."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models import Account, LedgerEntry
from models.enums import CreditBucket, LedgerEntryKind, Role
from services.access import Principal
from services.accounts import NewAccount
from services.balance import LARGEST_AMOUNT
from services.clock import FrozenClock
from services.errors import Forbidden, InvalidValue, PaymentDeclined, PaymentMethodRequired
from services.payments import SimulatedPaymentProvider, set_payment_method
from services.runtime import Runtime
from tests.services.conftest import Buckets, buckets, buy, ledger, open_account, principal

pytestmark = pytest.mark.usefixtures("db")


async def assert_nothing_bought(account: NewAccount, payments: SimulatedPaymentProvider) -> None:
    assert payments.charges == {}
    assert [e.kind for e in await ledger(account.account.id)] == [LedgerEntryKind.ALLOTMENT_GRANT]
    assert await buckets(account.account.id) == Buckets(1000, 0)


@pytest.mark.parametrize("credits", [-100, 0, 99, 1_000_001])
async def test_buying_fewer_than_100_or_more_than_a_million_credits_is_invalid(
    account: NewAccount, admin: Principal, runtime: Runtime, payments, card, credits: int
) -> None:
    with pytest.raises(InvalidValue) as caught:
        await buy(runtime, admin, credits)
    assert (caught.value.code, caught.value.field) == ("INVALID_VALUE", "credits")
    await assert_nothing_bought(account, payments)


@pytest.mark.parametrize("credits", [100, 1_000_000])
async def test_buying_100_to_a_million_credits_adds_them_to_purchased(
    account: NewAccount, admin: Principal, runtime: Runtime, payments, card, credits: int
) -> None:
    # when
    purchase = await buy(runtime, admin, credits)
    # then
    entry = await LedgerEntry.get(id=purchase.entry.id)
    assert (entry.kind, entry.bucket, entry.credits) == (
        LedgerEntryKind.PURCHASE,
        CreditBucket.PURCHASED,
        credits,
    )
    assert (purchase.balance.subscription, purchase.balance.purchased) == (1000, credits)
    assert await buckets(account.account.id) == Buckets(1000, credits)


async def test_the_charge_is_credits_times_the_price_per_credit(
    runtime: Runtime, payments: SimulatedPaymentProvider, clock: FrozenClock
) -> None:
    # given a plan at 3 cents a credit
    new = await open_account(clock, price_cents=3)
    actor = principal(new)
    await set_payment_method(actor=actor, token="tok_mastercard", provider=payments, clock=clock)
    # when 250 credits are bought
    purchase = await buy(runtime, actor, 250)
    # then 750 cents are charged, once, and recorded on the entry
    assert purchase.entry.amount_cents == 750
    assert [c.amount_cents for c in payments.charges.values()] == [750]
    assert (await LedgerEntry.get(id=purchase.entry.id)).amount_cents == 750


async def test_buying_without_a_payment_method_is_payment_method_required(
    account: NewAccount, admin: Principal, runtime: Runtime, payments
) -> None:
    with pytest.raises(PaymentMethodRequired) as caught:
        await buy(runtime, admin, 100)
    assert caught.value.code == "PAYMENT_METHOD_REQUIRED"
    await assert_nothing_bought(account, payments)


async def test_a_declined_charge_is_payment_declined_and_adds_nothing(
    account: NewAccount, admin: Principal, runtime: Runtime, payments, clock: FrozenClock
) -> None:
    # given a card the provider declines
    await set_payment_method(
        actor=admin, token="tok_chargeDeclined", provider=payments, clock=clock
    )
    # when
    with pytest.raises(PaymentDeclined) as caught:
        await buy(runtime, admin, 100)
    # then no entry, no credits
    assert caught.value.code == "PAYMENT_DECLINED"
    await assert_nothing_bought(account, payments)


async def test_an_unknown_payment_token_is_invalid(
    admin: Principal, payments, clock: FrozenClock
) -> None:
    with pytest.raises(InvalidValue) as caught:
        await set_payment_method(actor=admin, token="tok_unknown", provider=payments, clock=clock)
    assert caught.value.field == "token"


async def test_a_member_may_not_buy_credits(
    account: NewAccount, admin: Principal, runtime: Runtime, payments, card
) -> None:
    member = Principal(admin.account_id, admin.member_id, Role.MEMBER, admin.token_id)
    with pytest.raises(Forbidden):
        await buy(runtime, member, 100)
    await assert_nothing_bought(account, payments)


async def test_a_purchase_in_a_new_month_applies_the_allotment_first(
    account: NewAccount, admin: Principal, runtime: Runtime, clock: FrozenClock, card
) -> None:
    # given a new month nobody has touched yet
    clock.advance(timedelta(days=31))
    # when credits are bought
    purchase = await buy(runtime, admin, 100)
    # then the month turned first, and the purchase belongs to the new month
    kinds = [(e.kind, e.period_index) for e in await ledger(account.account.id)]
    assert kinds == [
        (LedgerEntryKind.ALLOTMENT_GRANT, 0),
        (LedgerEntryKind.ALLOTMENT_EXPIRY, 0),
        (LedgerEntryKind.ALLOTMENT_GRANT, 1),
        (LedgerEntryKind.PURCHASE, 1),
    ]
    assert purchase.entry.kind is LedgerEntryKind.PURCHASE
    assert (purchase.balance.subscription, purchase.balance.purchased) == (1000, 100)


async def test_purchased_credits_never_expire(
    account: NewAccount, admin: Principal, runtime: Runtime, clock: FrozenClock, card
) -> None:
    await buy(runtime, admin, 300)
    clock.advance(timedelta(days=100))
    await buy(runtime, admin, 100, key="later")
    assert await buckets(account.account.id) == Buckets(1000, 400)


async def test_a_purchase_the_balance_could_not_hold_is_refused_and_charges_nothing(
    account: NewAccount, admin: Principal, runtime: Runtime, payments, card
) -> None:
    # given purchased credits 1,000 under what leaves room for the monthly 1,000
    await Account.filter(id=account.account.id).update(purchased_credits=LARGEST_AMOUNT - 2000)
    # when 1,001 more are bought
    with pytest.raises(InvalidValue, match="buy at most 1,000 more") as caught:
        await buy(runtime, admin, 1001)
    # then nothing is charged or added, and the balance stays what it was
    assert caught.value.field == "credits"
    assert payments.charges == {}
    assert (await Account.get(id=account.account.id)).purchased_credits == LARGEST_AMOUNT - 2000


async def test_a_purchase_up_to_what_the_balance_can_hold_goes_through(
    account: NewAccount, admin: Principal, runtime: Runtime, payments, card
) -> None:
    await Account.filter(id=account.account.id).update(purchased_credits=LARGEST_AMOUNT - 2000)
    purchase = await buy(runtime, admin, 1000)
    assert purchase.balance.purchased + purchase.balance.subscription == LARGEST_AMOUNT


@pytest.mark.parametrize(("price_cents", "allowed"), [(2147, True), (2148, False)])
async def test_the_price_per_credit_keeps_the_largest_purchase_within_an_int(
    clock: FrozenClock, price_cents: int, allowed: bool
) -> None:
    # 1,000,000 credits x 2,147 cents = 2,147,000,000, under the contract's 2,147,483,647
    if allowed:
        new = await open_account(clock, price_cents=price_cents)
        assert new.account.price_per_credit_cents == price_cents
    else:
        with pytest.raises(InvalidValue, match="1 to 2,147 cents"):
            await open_account(clock, price_cents=price_cents)


async def test_an_account_priced_before_the_price_rule_cannot_charge_past_an_int(
    account: NewAccount, admin: Principal, runtime: Runtime, payments, card
) -> None:
    # given an account priced at 5,000 cents a credit (the rule now stops at 2,147)
    await Account.filter(id=account.account.id).update(price_per_credit_cents=5000)
    # when a million credits are bought (5,000,000,000 cents)
    refused = "at most 429,496 credits at this account.s price"
    with pytest.raises(InvalidValue, match=refused) as caught:
        await buy(runtime, admin, 1_000_000)
    # then nothing is charged or added
    assert caught.value.field == "credits"
    assert payments.charges == {}
    assert (await Account.get(id=account.account.id)).purchased_credits == 0
