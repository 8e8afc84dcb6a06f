"""The ledger's batched commits: changes that arrive together commit together, each
succeeding or failing on its own, and a caller hears of its change only once committed."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from models import LedgerEntry, Message
from models.enums import CreditBucket, LedgerEntryKind
from services import ledger
from services.accounts import NewAccount
from services.balance import Posting
from services.errors import InsufficientCredits
from services.ledger import Tx
from services.ledger_writer import AccountMissing
from services.messaging import Sent
from services.runtime import Runtime
from tests.conftest import ON_POSTGRES
from tests.services.conftest import Buckets, assert_ledger_balances, buckets, open_shop, send

pytestmark = pytest.mark.usefixtures("db")

ONE_CREDIT = Posting(LedgerEntryKind.PURCHASE, CreditBucket.PURCHASED, 1, amount_cents=2)


class CodeBroke(Exception):
    """A rule's own bug, not a domain refusal."""


async def add_one(tx: Tx) -> int:
    entry_id: int = (await tx.post(ONE_CREDIT)).id
    return entry_id


async def add_one_then_break(tx: Tx) -> int:
    await tx.post(ONE_CREDIT)
    raise CodeBroke


async def refuse(tx: Tx) -> int:
    raise InsufficientCredits.for_cost(balance=tx.total, required=10**6)


async def test_changes_that_arrive_together_commit_in_one_batch(
    account: NewAccount, runtime: Runtime
) -> None:
    # when 20 changes of one account are made at once
    committed = await asyncio.gather(
        *(ledger.commit(runtime, account.account.id, add_one) for _ in range(20))
    )
    # then they were committed together, in order, each with its own result
    assert runtime.ledger.batches == 1
    assert [c.balance.total for c in committed if c.balance] == list(range(1001, 1021))
    ids = [c.value for c in committed]
    assert ids == sorted(ids)
    await assert_ledger_balances(account.account.id)


async def test_a_change_refused_by_its_rule_fails_alone_and_the_batch_commits(
    account: NewAccount, runtime: Runtime
) -> None:
    # when a refused change sits between two good ones in one batch
    first, refused, last = await asyncio.gather(
        ledger.commit(runtime, account.account.id, add_one),
        ledger.commit(runtime, account.account.id, refuse),
        ledger.commit(runtime, account.account.id, add_one),
        return_exceptions=True,
    )
    # then only that one failed, and the others committed around it
    assert runtime.ledger.batches == 1
    assert isinstance(refused, InsufficientCredits)
    assert not isinstance(first, BaseException)
    assert not isinstance(last, BaseException)
    assert await buckets(account.account.id) == Buckets(1000, 2)
    await assert_ledger_balances(account.account.id)


async def test_a_change_whose_code_raises_is_rolled_back_alone(
    account: NewAccount, runtime: Runtime
) -> None:
    # when a change writes an entry and then raises, between two good changes
    results = await asyncio.gather(
        ledger.commit(runtime, account.account.id, add_one),
        ledger.commit(runtime, account.account.id, add_one_then_break),
        ledger.commit(runtime, account.account.id, add_one),
        return_exceptions=True,
    )
    # then its entry is gone and the account's buckets never counted it
    assert isinstance(results[1], CodeBroke)
    purchases = await LedgerEntry.filter(
        account_id=account.account.id, kind=LedgerEntryKind.PURCHASE
    ).count()
    assert purchases == 2
    assert await buckets(account.account.id) == Buckets(1000, 2)
    await assert_ledger_balances(account.account.id)


async def test_changes_of_several_accounts_share_a_batch_and_stay_apart(
    runtime: Runtime,
) -> None:
    # given two accounts with 3 credits each
    shops = [
        await open_shop(runtime, monthly_credits=3, number=number)
        for number in ("+14155550100", "+14155550101")
    ]
    # when each gets 5 sends at once, interleaved in one batch
    results = await asyncio.gather(
        *(send(runtime, shop.actor, shop.inbox, f"n{i}") for i in range(5) for shop in shops),
        return_exceptions=True,
    )
    # then each account sent exactly what it could pay for
    assert Counter(type(r) for r in results) == {Sent: 6, InsufficientCredits: 4}
    for shop in shops:
        assert await Message.filter(account_id=shop.id).count() == 3
        assert await buckets(shop.id) == Buckets(0, 0)
        await assert_ledger_balances(shop.id)


async def test_a_change_cancelled_before_its_batch_runs_is_never_made(
    account: NewAccount, runtime: Runtime
) -> None:
    # given a change waiting behind a batch in progress
    first = asyncio.create_task(ledger.commit(runtime, account.account.id, add_one))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(ledger.commit(runtime, account.account.id, add_one))
    await asyncio.sleep(0)
    # when its caller gives up before its batch starts
    waiting.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # then only the first change was made
    assert await buckets(account.account.id) == Buckets(1000, 1)


async def test_a_change_of_an_account_that_does_not_exist_is_refused(
    runtime: Runtime,
) -> None:
    with pytest.raises(AccountMissing):
        await ledger.commit(runtime, 10**9, add_one)


async def test_an_orm_query_inside_a_change_fails_instead_of_waiting_forever(
    account: NewAccount, runtime: Runtime
) -> None:
    async def reads_with_the_orm(tx: Tx) -> int:
        return await Message.filter(account_id=tx.account_id).count()

    if ON_POSTGRES:
        # Tortoise gives the writer's task the batch's own transaction: the query answers.
        assert (await ledger.commit(runtime, account.account.id, reads_with_the_orm)).value == 0
        return
    with pytest.raises(RuntimeError, match="tx.conn"):
        await asyncio.wait_for(ledger.commit(runtime, account.account.id, reads_with_the_orm), 5)


async def test_a_change_is_published_even_when_its_caller_left_before_the_commit(
    account: NewAccount, runtime: Runtime
) -> None:
    # given a subscriber of the account, and a change whose caller gives up once it ran
    subscription = runtime.broker.subscribe(account.account.id)
    ran = asyncio.Event()

    async def add_one_and_tell(tx: Tx) -> int:
        ran.set()
        return await add_one(tx)

    caller = asyncio.create_task(ledger.commit(runtime, account.account.id, add_one_and_tell))
    await ran.wait()
    caller.cancel()
    # then the change commits, and its event still reaches the subscriber
    event = await asyncio.wait_for(anext(aiter(subscription)), 5)
    assert event is not None
    assert [entry.kind for entry in event.entries] == [LedgerEntryKind.PURCHASE]
    assert await buckets(account.account.id) == Buckets(1000, 1)
    await subscription.aclose()
