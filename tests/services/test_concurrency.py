"""Requests that race: balances, idempotency keys and month rollovers hold under concurrency.

On PostgreSQL the calls run on a pool of connections, so they truly overlap; on
SQLite they interleave at every query. Both must give the same answers.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from models import LedgerEntry, Message, SubscriptionPeriod
from models.enums import LedgerEntryKind
from services import ledger as ledger_door
from services.access import Principal
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.errors import InsufficientCredits
from services.messaging import Sent
from services.payments import set_payment_method
from services.runtime import Runtime
from tests.services.conftest import (
    Buckets,
    assert_ledger_balances,
    buckets,
    buy,
    ledger,
    open_shop,
    receive,
    report,
    send,
)

pytestmark = pytest.mark.usefixtures("db")


async def test_200_sends_racing_for_100_credits_send_exactly_100(runtime: Runtime) -> None:
    # given exactly 100 credits
    shop = await open_shop(runtime, monthly_credits=100)
    # when 200 one-credit sends run at once
    results = await asyncio.gather(
        *(send(runtime, shop.actor, shop.inbox, f"Hello {n}") for n in range(200)),
        return_exceptions=True,
    )
    # then exactly 100 went out and 100 were refused, and the balance ends at 0
    outcomes = Counter(type(result) for result in results)
    assert outcomes == {Sent: 100, InsufficientCredits: 100}
    assert await buckets(shop.id) == Buckets(0, 0)
    assert await Message.filter(account_id=shop.id).count() == 100
    # and in commit order each entry's balance_after is one less than the one before
    entries = await ledger(shop.id)
    assert [e.balance_after for e in entries] == list(range(100, -1, -1))
    await assert_ledger_balances(shop.id)


async def test_50_purchases_with_one_key_buy_once(
    account: NewAccount, admin: Principal, runtime: Runtime, payments, card
) -> None:
    # when 50 identical purchases with one key arrive at once
    purchases = await asyncio.gather(*(buy(runtime, admin, 250, key="once") for _ in range(50)))
    # then one ran, one charge was made, and all 50 answer with its entry
    assert {p.entry.id for p in purchases} == {purchases[0].entry.id}
    assert len(payments.charges) == 1
    assert await LedgerEntry.filter(kind=LedgerEntryKind.PURCHASE).count() == 1
    assert await buckets(account.account.id) == Buckets(1000, 250)
    await assert_ledger_balances(account.account.id)


async def test_20_sends_with_one_key_send_once(
    account: NewAccount, admin: Principal, inbox, runtime: Runtime
) -> None:
    sends = await asyncio.gather(
        *(send(runtime, admin, inbox, "Hello", key="once") for _ in range(20))
    )
    assert {s.message.id for s in sends} == {sends[0].message.id}
    assert await Message.filter(account_id=account.account.id).count() == 1
    assert await buckets(account.account.id) == Buckets(999, 0)


async def test_the_same_inbound_webhook_arriving_20_times_at_once_is_charged_once(
    account: NewAccount, inbox, runtime: Runtime
) -> None:
    received = await asyncio.gather(
        *(receive(runtime, inbox, "Hi", provider_id="SM-twice") for _ in range(20))
    )
    assert sum(not r.duplicate for r in received) == 1
    assert {r.message.id for r in received} == {received[0].message.id}
    assert await buckets(account.account.id) == Buckets(999, 0)


async def test_a_failure_reported_10_times_at_once_is_refunded_once(
    account: NewAccount, admin: Principal, inbox, runtime: Runtime
) -> None:
    sent = await send(runtime, admin, inbox, "a" * 153 * 3)
    await asyncio.gather(*(report(runtime, sent.message, delivered=False) for _ in range(10)))
    refunds = await LedgerEntry.filter(kind=LedgerEntryKind.REFUND)
    assert [(e.credits, e.message_id) for e in refunds] == [(3, sent.message.id)]
    assert await buckets(account.account.id) == Buckets(1000, 0)


async def test_a_month_rollover_hit_by_30_calls_at_once_is_applied_once(
    account: NewAccount, admin: Principal, inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given 5 credits used, a saved card, and then 40 days without a request
    await send(runtime, admin, inbox, "a" * 153 * 5)
    await set_payment_method(
        actor=admin, token="tok_visa", provider=runtime.payments, clock=runtime.clock
    )
    clock.advance(timedelta(days=40))
    # when 30 balance-touching calls of every kind arrive at once
    calls = [
        *(send(runtime, admin, inbox, f"Hello {n}") for n in range(10)),
        *(receive(runtime, inbox, "Hi") for _ in range(10)),
        *(buy(runtime, admin, 100, key=f"buy-{n}") for n in range(5)),
        *(ledger_door.balance_now(Runtime(clock=clock), account.account.id) for _ in range(5)),
    ]
    await asyncio.gather(*calls)
    # then the new month has one period row, one expiry of what was left and one grant
    rows = await SubscriptionPeriod.filter(account_id=account.account.id, index=1)
    assert len(rows) == 1
    assert rows[0].expired == 995
    allotments = [
        (e.kind, e.credits, e.period_index)
        for e in await ledger(account.account.id)
        if e.kind in (LedgerEntryKind.ALLOTMENT_GRANT, LedgerEntryKind.ALLOTMENT_EXPIRY)
    ]
    assert allotments == [
        (LedgerEntryKind.ALLOTMENT_GRANT, 1000, 0),
        (LedgerEntryKind.ALLOTMENT_EXPIRY, -995, 0),
        (LedgerEntryKind.ALLOTMENT_GRANT, 1000, 1),
    ]
    assert await buckets(account.account.id) == Buckets(980, 500)
    await assert_ledger_balances(account.account.id)
