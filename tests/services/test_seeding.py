from __future__ import annotations

from datetime import timedelta

import pytest
from tortoise.functions import Count, Sum

from api.runtime import Runtime
from models import Account, Inbox, LedgerEntry, Message, SubscriptionPeriod
from models.enums import CreditBucket, LedgerEntryKind, Role
from services.access import Principal
from services.accounts import PlanTerms, create_account
from services.calendar import Granularity
from services.clock import FrozenClock
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
