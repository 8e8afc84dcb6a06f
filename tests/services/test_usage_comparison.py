"""Period-over-period comparison: ``previous`` and ``previousTotals`` equal a report of their own.

One history (seeded, both directions, some refunded, personal and shared inboxes), read in
several zones; for every granularity, grouping and a few ranges (all time included), the
report's previous range and figures are checked against a separate report over that range.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from models import Inbox
from models.enums import Role, WeekStart
from services.access import Principal
from services.accounts import NewAccount, update_account
from services.calendar import Granularity
from services.clock import FrozenClock
from services.inboxes import create_shared_inbox
from services.members import create_member
from services.runtime import Runtime
from services.usage import UsageGroupBy, account_usage, member_usage, previous_range
from tests.services.conftest import REGION, body_of, receive, report, send

FIRST = datetime(2025, 6, 1, tzinfo=UTC)
TODAY = datetime(2026, 1, 15, 12, tzinfo=UTC)
ZONES = ["America/New_York", "Asia/Kolkata", "Europe/London"]
RANGES = [
    None,
    (date(2025, 12, 1), date(2025, 12, 31)),
    (date(2025, 10, 15), date(2026, 1, 10)),
    (date(2026, 1, 3), date(2026, 1, 3)),
]


async def history(admin: Principal, runtime: Runtime, clock: FrozenClock) -> list[int]:
    """Two members with personal inboxes, a shared inbox, and 150 messages since FIRST."""
    clock.set(FIRST - timedelta(days=1))
    owners = []
    for n, number in enumerate(["+14155550111", "+14155550112"]):
        member = await create_member(
            actor=admin,
            name=f"M{n}",
            email=f"m{n}@acme.example",
            role=Role.MEMBER,
            personal_phone_number=number,
            region=REGION,
            clock=clock,
        )
        owners.append(member.id)
    await create_shared_inbox(
        actor=admin,
        name="S",
        phone_number="+14155550121",
        member_ids=[],
        region=REGION,
        clock=clock,
    )
    inboxes = await Inbox.filter(account_id=admin.account_id).order_by("id")
    rng = random.Random(20260115)
    span = int((TODAY - FIRST).total_seconds())
    for offset in sorted(rng.randrange(span) for _ in range(150)):
        clock.set(FIRST + timedelta(seconds=offset))
        inbox = rng.choice(inboxes)
        if rng.random() < 0.4:
            await receive(runtime, inbox, body_of(rng.randint(1, 3)))
            continue
        sent = await send(runtime, admin, inbox, body_of(rng.randint(1, 3)))
        if rng.random() < 0.2:
            await report(runtime, sent.message, delivered=False)
    clock.set(TODAY)
    return owners


def test_the_previous_range_has_as_many_days_and_ends_the_day_before() -> None:
    assert previous_range(date(2026, 3, 1), date(2026, 3, 31)) == (
        date(2026, 1, 29),
        date(2026, 2, 28),
    )
    assert previous_range(date(2026, 1, 1), date(2026, 1, 1)) == (
        date(2025, 12, 31),
        date(2025, 12, 31),
    )


@pytest.mark.usefixtures("account")
async def test_previous_equals_a_separate_report_over_its_range(
    admin: Principal, runtime: Runtime, clock: FrozenClock
) -> None:
    owners = await history(admin, runtime, clock)
    for zone in ZONES:
        await update_account(actor=admin, timezone=zone, week_start=WeekStart.SUNDAY, clock=clock)
        for granularity in Granularity:
            for group_by in UsageGroupBy:
                for days in RANGES:
                    await assert_previous_is_its_own_report(
                        admin, clock, days, granularity, group_by
                    )
        for owner in owners:
            member = await member_usage(
                actor=admin,
                member_id=owner,
                days=RANGES[1],
                granularity=Granularity.DAY,
                clock=clock,
            )
            alone = await member_usage(
                actor=admin,
                member_id=owner,
                days=(member.previous.start, member.previous.end),
                granularity=Granularity.ALL,
                clock=clock,
            )
            assert member.previous.totals == alone.totals


async def assert_previous_is_its_own_report(
    admin: Principal,
    clock: FrozenClock,
    days: tuple[date, date] | None,
    granularity: Granularity,
    group_by: UsageGroupBy,
) -> None:
    # when a report is read, and then a report over its previous range
    report = await account_usage(
        actor=admin, days=days, granularity=granularity, group_by=group_by, clock=clock
    )
    previous = report.previous
    length = report.end - report.start
    assert (previous.end - previous.start, previous.end) == (
        length,
        report.start - timedelta(days=1),
    )
    alone = await account_usage(
        actor=admin,
        days=(previous.start, previous.end),
        granularity=Granularity.ALL,
        group_by=group_by,
        clock=clock,
    )
    # then the comparison's figures are that report's, for the totals and every group
    context = (days, granularity, group_by)
    assert previous.totals == alone.totals, context
    assert [g.previous_totals for g in report.groups] == [g.totals for g in alone.groups], context


async def test_the_all_time_report_compares_with_as_many_days_before_its_first(
    admin: Principal, runtime: Runtime, clock: FrozenClock, account: NewAccount
) -> None:
    await history(admin, runtime, clock)
    report = await account_usage(
        actor=admin,
        days=None,
        granularity=Granularity.MONTH,
        group_by=UsageGroupBy.NONE,
        clock=clock,
    )
    assert report.previous.end == report.start - timedelta(days=1)
    assert report.previous.end - report.previous.start == report.end - report.start
    assert report.previous.totals.messages == 0
