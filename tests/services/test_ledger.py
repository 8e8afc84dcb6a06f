"""The ledger: which buckets a debit takes, the entries it writes, and the events it announces."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tortoise import Tortoise
from tortoise.backends.base.client import TransactionalDBClient

from models import LedgerEntry
from models.enums import CreditBucket, LedgerEntryKind
from services.accounts import NewAccount
from services.balance import debit_split
from services.broadcast import BalanceEvent, LocalBroker
from services.clock import FrozenClock
from services.errors import InsufficientCredits
from services.runtime import Runtime
from tests.services.conftest import (
    EventReader,
    Shop,
    assert_ledger_balances,
    body_of,
    buy,
    enable_auto_recharge,
    ledger,
    open_shop,
    receive,
    report,
    send,
)

SUB, PUR = CreditBucket.SUBSCRIPTION, CreditBucket.PURCHASED


@pytest.mark.parametrize(
    ("subscription", "cost", "split"),
    [
        (10, 3, [(SUB, -3)]),
        (5, 5, [(SUB, -5)]),
        (2, 5, [(SUB, -2), (PUR, -3)]),
        (0, 4, [(PUR, -4)]),
        (7, 0, []),
    ],
)
def test_debit_split_takes_subscription_first_then_purchased(
    subscription: int, cost: int, split: list[tuple[CreditBucket, int]]
) -> None:
    assert debit_split(subscription=subscription, cost=cost) == split


@given(subscription=st.integers(0, 10_000), cost=st.integers(0, 10_000))
def test_debit_split_takes_exactly_the_cost_and_never_more_subscription_than_exists(
    subscription: int, cost: int
) -> None:
    split = debit_split(subscription=subscription, cost=cost)
    assert sum(credits for _, credits in split) == -cost
    assert all(credits < 0 for _, credits in split)
    assert [bucket for bucket, _ in split] in ([], [SUB], [PUR], [SUB, PUR])
    assert -dict(split).get(SUB, 0) == min(subscription, cost)


@pytest.fixture
async def funded(db: str, runtime: Runtime) -> Shop:
    """An account with 2 subscription credits, 100 purchased ones, a card and an inbox."""
    return await open_shop(runtime, monthly_credits=2, purchased=100)


async def test_a_message_within_the_subscription_writes_one_subscription_entry(
    account: NewAccount, admin, inbox, runtime: Runtime
) -> None:
    # when
    sent = await send(runtime, admin, inbox, body_of(3))
    # then
    entries = await ledger(account.account.id)
    assert [(e.kind, e.bucket, e.credits, e.balance_after) for e in entries[1:]] == [
        (LedgerEntryKind.OUTBOUND_MESSAGE, SUB, -3, 997)
    ]
    assert entries[1].message_id == sent.message.id
    assert (sent.balance.subscription, sent.balance.purchased) == (997, 0)


async def test_a_message_across_both_buckets_writes_the_subscription_entry_first(
    funded: Shop, runtime: Runtime
) -> None:
    # given 2 subscription + 100 purchased credits
    # when a 3-segment message is sent
    sent = await send(runtime, funded.actor, funded.inbox, body_of(3))
    # then SUBSCRIPTION pays 2 first, PURCHASED the rest, one entry each
    entries = (await ledger(funded.id))[-2:]
    assert [(e.kind, e.bucket, e.credits, e.balance_after) for e in entries] == [
        (LedgerEntryKind.OUTBOUND_MESSAGE, SUB, -2, 100),
        (LedgerEntryKind.OUTBOUND_MESSAGE, PUR, -1, 99),
    ]
    assert entries[0].id < entries[1].id
    assert {e.message_id for e in entries} == {sent.message.id}
    assert (sent.balance.subscription, sent.balance.purchased) == (0, 99)


async def test_a_message_with_subscription_empty_takes_only_purchased(
    funded: Shop, runtime: Runtime
) -> None:
    # given the subscription bucket emptied by a first message
    actor, inbox = funded.actor, funded.inbox
    await send(runtime, actor, inbox, body_of(2))
    # when
    await send(runtime, actor, inbox, body_of(4))
    # then
    last = (await ledger(funded.id))[-1]
    assert (last.bucket, last.credits, last.balance_after) == (PUR, -4, 96)
    await assert_ledger_balances(funded.id)


async def test_balance_after_is_the_running_total_in_commit_order(
    funded: Shop, runtime: Runtime
) -> None:
    # given a mix of every kind of change
    actor, inbox = funded.actor, funded.inbox
    await send(runtime, actor, inbox, body_of(3))
    await receive(runtime, inbox, body_of(2))
    await buy(runtime, actor, 200, key="second")
    # then every entry's balance_after is the sum of all entries up to it
    totals = [e.balance_after for e in await ledger(funded.id)]
    assert totals == [2, 102, 100, 99, 97, 297]
    await assert_ledger_balances(funded.id)


async def test_amount_cents_is_set_only_on_purchases_and_auto_recharges(
    funded: Shop, runtime: Runtime, clock: FrozenClock
) -> None:
    # given purchases, an auto-recharge, messages both ways, a refund and a new month
    actor, inbox = funded.actor, funded.inbox
    await enable_auto_recharge(actor, runtime, threshold=100, credits=100)
    sent = await send(runtime, actor, inbox, body_of(5))
    await receive(runtime, inbox, "hi")
    await report(runtime, sent.message, delivered=False)
    clock.advance(timedelta(days=31))
    await send(runtime, actor, inbox, "hi")
    # then
    entries = await ledger(funded.id)
    priced = {LedgerEntryKind.PURCHASE, LedgerEntryKind.AUTO_RECHARGE}
    assert {e.kind for e in entries} == set(LedgerEntryKind)
    for entry in entries:
        assert (entry.amount_cents is not None) == (entry.kind in priced), entry.kind
    assert [e.amount_cents for e in entries if e.kind in priced] == [200, 200]


async def test_a_send_is_announced_once_after_commit_with_its_entry_ids_in_order(
    funded: Shop, runtime: Runtime
) -> None:
    # given a subscriber listening before anything happens
    actor, inbox = funded.actor, funded.inbox
    reader = EventReader(runtime, funded.id)
    await reader.start()
    # when a message spanning both buckets is sent
    sent = await send(runtime, actor, inbox, body_of(3))
    # then exactly one event carries both entries, SUBSCRIPTION first, and the new balance
    event = await reader.next()
    entries = await LedgerEntry.filter(message_id=sent.message.id).order_by("id")
    assert list(event.entry_ids) == [e.id for e in entries]
    assert [e.bucket for e in entries] == [SUB, PUR]
    assert (event.balance.subscription, event.balance.purchased) == (0, 99)
    assert not await reader.pending()
    await reader.close()


async def test_every_change_gets_its_own_event_in_commit_order(
    funded: Shop, runtime: Runtime
) -> None:
    # given
    actor, inbox = funded.actor, funded.inbox
    reader = EventReader(runtime, funded.id)
    await reader.start()
    # when a receive and a purchase happen
    await receive(runtime, inbox, body_of(2))
    await buy(runtime, actor, 100, key="again")
    # then two events, versions rising, entries in ledger order
    first, second = await reader.next(), await reader.next()
    assert first.balance.version < second.balance.version
    ids = [e.id for e in (await ledger(funded.id))[-2:]]
    assert [*first.entry_ids, *second.entry_ids] == ids
    assert not await reader.pending()
    await reader.close()


async def test_a_refused_send_announces_nothing(db: str, runtime: Runtime) -> None:
    # given an account with 2 credits and a listener
    poor = await open_shop(runtime, monthly_credits=2)
    reader = EventReader(runtime, poor.id)
    await reader.start()
    # when a 3-credit send is refused
    with pytest.raises(InsufficientCredits):
        await send(runtime, poor.actor, poor.inbox, body_of(3))
    # then
    assert not await reader.pending()
    await reader.close()


class CommitCheckingBroker(LocalBroker):
    """Records, for each event, whether it was published inside a transaction."""

    def __init__(self) -> None:
        super().__init__()
        self.inside_transaction: list[bool] = []
        self.visible: list[bool] = []

    async def publish(self, event: BalanceEvent) -> None:
        connection = Tortoise.get_connection("default")
        self.inside_transaction.append(isinstance(connection, TransactionalDBClient))
        found = await LedgerEntry.filter(id__in=list(event.entry_ids)).count()
        self.visible.append(found == len(event.entry_ids))
        await super().publish(event)


async def test_events_are_published_after_the_change_commits(
    account: NewAccount, admin, inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given a broker that looks at the database when it is told about a change
    broker = CommitCheckingBroker()
    runtime.broker = broker
    # when changes of every shape happen (a new month, a send, a receive, a refund)
    clock.advance(timedelta(days=40))
    sent = await send(runtime, admin, inbox, "hello")
    await receive(runtime, inbox, "hi")
    await report(runtime, sent.message, delivered=False)
    # then none was published inside its transaction, and its entries were committed
    assert broker.inside_transaction == [False] * 4
    assert broker.visible == [True] * 4
