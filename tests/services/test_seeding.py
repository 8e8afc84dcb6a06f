from __future__ import annotations

import gc
from datetime import timedelta

import pytest
from tortoise.functions import Count, Sum

from models import Account, Inbox, LedgerEntry, Message, SubscriptionPeriod, UsageDay
from models.enums import CreditBucket, LedgerEntryKind, Role
from services import rollups, seeding
from services.access import Principal
from services.accounts import PlanTerms, create_account
from services.calendar import Granularity
from services.clock import FrozenClock
from services.runtime import Runtime
from services.seeding import grow_history
from services.usage import UsageGroupBy, account_usage
from tests.services.conftest import open_inbox, send


@pytest.fixture
async def old_account(db: str, clock: FrozenClock) -> Principal:
    # given an account created 100 days ago, with an inbox
    now = clock.now()
    clock.set(now - timedelta(days=100))
    created = await create_account(
        name="Old",
        admin_name="O",
        admin_email="o@old.example",
        timezone="Europe/London",
        plan=PlanTerms(monthly_credits=300, price_per_credit_cents=2),
        clock=clock,
    )
    admin = Principal(created.account.id, created.admin.id, Role.ADMIN, created.token.token.id)
    await open_inbox(admin, clock)
    clock.set(now)
    return admin


async def bucket_sums(account_id: int) -> dict[str, int]:
    rows = (
        await LedgerEntry.filter(account_id=account_id)
        .annotate(total=Sum("credits"))
        .group_by("bucket")
        .values("bucket", "total")
    )
    return {str(row["bucket"]): int(row["total"]) for row in rows}


async def test_seeded_history_keeps_the_ledger_whole(
    old_account: Principal, clock: FrozenClock
) -> None:
    # when 3,000 messages are seeded over the last 90 days
    written = await grow_history(
        account_id=old_account.account_id, messages=3000, days=90, now=clock.now()
    )
    # then the balance is the sum of the ledger, bucket by bucket
    account = await Account.get(id=old_account.account_id)
    assert written == await Message.filter(account_id=account.id).count() > 2500
    assert await bucket_sums(account.id) == {
        CreditBucket.SUBSCRIPTION.value: account.subscription_credits,
        CreditBucket.PURCHASED.value: account.purchased_credits,
    }
    assert account.subscription_credits >= 0
    # and each month since creation was granted exactly once
    periods = await SubscriptionPeriod.filter(account_id=account.id).order_by("index")
    assert [p.index for p in periods] == list(range(account.period_index + 1))
    grants = await LedgerEntry.filter(account_id=account.id, kind=LedgerEntryKind.ALLOTMENT_GRANT)
    assert len(grants) == len(periods)
    # and the small plan needed auto-recharges, each paid for
    recharges = await LedgerEntry.filter(account_id=account.id, kind=LedgerEntryKind.AUTO_RECHARGE)
    assert recharges
    assert all(r.amount_cents == r.credits * 2 for r in recharges)


async def test_seeded_usage_equals_the_messages(old_account: Principal, clock: FrozenClock) -> None:
    await grow_history(account_id=old_account.account_id, messages=1500, days=90, now=clock.now())
    report = await account_usage(
        actor=old_account,
        days=None,
        granularity=Granularity.ALL,
        group_by=UsageGroupBy.NONE,
        clock=clock,
    )
    totals = (
        await Message.filter(account_id=old_account.account_id)
        .annotate(n=Count("id"), s=Sum("segments"))
        .first()
        .values("n", "s")
    )
    assert (report.totals.messages, report.totals.segments) == (totals["n"], totals["s"])


async def test_live_sends_continue_after_a_seed(
    old_account: Principal, clock: FrozenClock, runtime: Runtime
) -> None:
    await grow_history(account_id=old_account.account_id, messages=500, days=30, now=clock.now())
    last = await Message.filter(account_id=old_account.account_id).order_by("-id").first()
    assert last is not None
    # when a message is sent the live way
    sent = await send(runtime, old_account, await Inbox.get(id=last.inbox_id), "after the seed")
    # then its id follows the seeded ones (PostgreSQL's sequence was moved past them)
    assert sent.message.id > last.id
    assert await bucket_sums(old_account.account_id) == {
        CreditBucket.SUBSCRIPTION.value: sent.balance.subscription,
        CreditBucket.PURCHASED.value: sent.balance.purchased,
    }


async def test_a_history_is_seeded_only_into_an_empty_account(
    old_account: Principal, clock: FrozenClock
) -> None:
    await grow_history(account_id=old_account.account_id, messages=10, days=10, now=clock.now())
    with pytest.raises(ValueError, match="already has messages"):
        await grow_history(account_id=old_account.account_id, messages=10, days=10, now=clock.now())


class Interrupted(Exception):
    pass


async def history_rows(account_id: int) -> tuple[int, int, int, int]:
    return (
        await Message.filter(account_id=account_id).count(),
        await LedgerEntry.filter(account_id=account_id).count(),
        await SubscriptionPeriod.filter(account_id=account_id).count(),
        await UsageDay.filter(account_id=account_id).count(),
    )


async def test_a_seed_that_fails_after_writing_leaves_nothing_behind(
    old_account: Principal, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an account as it was before any seed
    account_id = old_account.account_id
    before = await Account.get(id=account_id)
    rows_before = await history_rows(account_id)

    async def fail(**_: object) -> None:
        raise RuntimeError("rollups failed")

    # when the seed fails after its messages and ledger are written
    monkeypatch.setattr(rollups, "replace_usage", fail)
    with pytest.raises(RuntimeError, match="rollups failed"):
        await grow_history(account_id=account_id, messages=800, days=60, now=clock.now())
    # then the rows written in bulk went with the transaction
    assert await history_rows(account_id) == rows_before
    after = await Account.get(id=account_id)
    assert (after.subscription_credits, after.purchased_credits, after.period_index) == (
        before.subscription_credits,
        before.purchased_credits,
        before.period_index,
    )
    # and the garbage collector is back on
    assert gc.isenabled()


async def test_a_seed_interrupted_while_messages_stream_in_can_be_run_again(
    old_account: Principal, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(seeding, "PROGRESS_EVERY", 100)
    rows_before = await history_rows(old_account.account_id)

    def interrupt(count: int) -> None:
        raise Interrupted

    # when the seed is interrupted after its first 100 messages were made
    with pytest.raises(Interrupted):
        await grow_history(
            account_id=old_account.account_id, messages=800, days=60, now=clock.now(),
            progress=interrupt,
        )  # fmt: skip
    # then nothing was written, and the same connection seeds the account afterwards
    assert await history_rows(old_account.account_id) == rows_before
    written = await grow_history(
        account_id=old_account.account_id, messages=800, days=60, now=clock.now()
    )
    assert await Message.filter(account_id=old_account.account_id).count() == written > 700
    assert gc.isenabled()


async def test_progress_counts_every_message_written_in_steps(
    old_account: Principal, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(seeding, "PROGRESS_EVERY", 100)
    steps: list[int] = []
    written = await grow_history(
        account_id=old_account.account_id, messages=1050, days=60, now=clock.now(),
        progress=steps.append,
    )  # fmt: skip
    assert sum(steps) == written
    assert steps[:-1] == [100] * (len(steps) - 1)
    assert 0 < steps[-1] <= 100
