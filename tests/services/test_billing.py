"""Balances read with their due allotment, the text box estimate, and a month's figures."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from models import Account, Inbox, LedgerEntry
from models.enums import Encoding, LedgerEntryKind
from services.access import Principal
from services.accounts import NewAccount
from services.billing import (
    MAX_ESTIMATE_CHARACTERS,
    PeriodFigures,
    billing_overview,
    current_balance,
    estimate,
    period_figures,
)
from services.broadcast import BalanceEvent, LocalBroker
from services.clock import FrozenClock
from services.errors import InvalidValue
from services.messaging import record_delivery_status
from services.payments import set_payment_method
from services.purchases import buy_credits
from services.runtime import Runtime
from tests.services.test_history import receive, send, shared


@pytest.fixture
async def desk(admin: Principal, clock: FrozenClock) -> Inbox:
    return await shared(admin, clock, "+14155550100")


async def buy(runtime: Runtime, admin: Principal, credits: int, key: str) -> None:
    await buy_credits(
        actor=admin,
        credits=credits,
        idempotency_key=key,
        runtime=runtime,
    )


class Listener:
    """One account's balance events, listening from creation."""

    def __init__(self, broker: LocalBroker, account_id: int) -> None:
        events = broker.subscribe(account_id)
        self.events = events
        self.next = asyncio.ensure_future(anext(events))

    async def received(self) -> BalanceEvent | None:
        await asyncio.sleep(0.01)
        event = self.next.result() if self.next.done() else None
        self.next.cancel()
        await asyncio.gather(self.next, return_exceptions=True)
        await self.events.aclose()
        return event


def test_estimate_counts_a_body_of_up_to_10000_characters() -> None:
    count = estimate("a" * MAX_ESTIMATE_CHARACTERS)
    assert (count.encoding, count.segments) == (Encoding.GSM7, 66)


def test_estimate_refuses_longer_bodies_naming_body() -> None:
    with pytest.raises(InvalidValue) as refused:
        estimate("a" * (MAX_ESTIMATE_CHARACTERS + 1))
    assert refused.value.field == "body"


async def test_current_balance_within_the_month_changes_and_announces_nothing(
    account: NewAccount, clock: FrozenClock, broker: LocalBroker, runtime: Runtime
) -> None:
    # given
    listener = Listener(broker, account.account.id)
    await asyncio.sleep(0)

    # when
    balance = await current_balance(
        account_id=account.account.id,
        runtime=runtime,
    )

    # then
    assert (balance.subscription, balance.purchased, balance.total) == (1000, 0, 1000)
    assert await listener.received() is None
    assert await LedgerEntry.filter(account_id=account.account.id).count() == 1


async def test_current_balance_applies_and_announces_a_due_allotment_once(
    account: NewAccount, admin: Principal, desk: Inbox, runtime: Runtime, broker: LocalBroker
) -> None:
    # given 1 credit used, then 40 days later
    await send(runtime, admin, desk)
    clock = runtime.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(timedelta(days=40))
    listener = Listener(broker, account.account.id)
    await asyncio.sleep(0)

    # when
    balance = await current_balance(
        account_id=account.account.id,
        runtime=runtime,
    )
    again = await current_balance(
        account_id=account.account.id,
        runtime=runtime,
    )

    # then
    assert (balance.subscription, again.subscription) == (1000, 1000)
    assert balance.period_start.isoformat() == "2026-02-15T12:00:00+00:00"
    event = await listener.received()
    assert event is not None
    entries = await LedgerEntry.filter(id__in=list(event.entry_ids)).order_by("id")
    assert [(e.kind, e.credits) for e in entries] == [
        (LedgerEntryKind.ALLOTMENT_EXPIRY, -999),
        (LedgerEntryKind.ALLOTMENT_GRANT, 1000),
    ]
    assert await LedgerEntry.filter(kind=LedgerEntryKind.ALLOTMENT_GRANT).count() == 2


async def test_period_figures_net_refunds_and_count_purchases(
    account: NewAccount, admin: Principal, desk: Inbox, runtime: Runtime
) -> None:
    # given 1 + 2 credits sent, 1 received, 2 refunded, 200 and 300 bought
    await set_payment_method(
        actor=admin, token="tok_visa", provider=runtime.payments, clock=runtime.clock
    )
    await send(runtime, admin, desk, "Hello")
    failed = await send(runtime, admin, desk, "a" * 200)
    await receive(runtime, desk, "in-1")
    await buy(runtime, admin, 200, "a")
    await buy(runtime, admin, 300, "b")
    assert failed.provider_message_id is not None
    await record_delivery_status(
        provider_message_id=failed.provider_message_id,
        delivered=False,
        runtime=runtime,
    )

    # when
    figures = await period_figures(account_id=account.account.id, period_index=0)

    # then
    assert figures == PeriodFigures(credits_used=2, credits_purchased=500, spent_cents=1000)


async def test_period_figures_of_a_month_without_entries_are_zero(account: NewAccount) -> None:
    figures = await period_figures(account_id=account.account.id, period_index=7)
    assert figures == PeriodFigures(credits_used=0, credits_purchased=0, spent_cents=0)


async def test_billing_overview_is_of_the_current_month(
    account: NewAccount, admin: Principal, desk: Inbox, runtime: Runtime, broker: LocalBroker
) -> None:
    # given usage in the first month, and usage of 1 credit in the second
    await send(runtime, admin, desk, "a" * 200)
    clock = runtime.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(timedelta(days=31))
    await send(runtime, admin, desk, "Hello")

    # when
    overview = await billing_overview(
        account_id=account.account.id,
        runtime=runtime,
    )

    # then
    assert overview.figures == PeriodFigures(credits_used=1, credits_purchased=0, spent_cents=0)
    assert (overview.balance.subscription, overview.balance.total) == (999, 999)
    assert overview.account.period_index == 1
    assert overview.auto_recharge.enabled is False
    assert (await Account.get(id=account.account.id)).period_index == 1
