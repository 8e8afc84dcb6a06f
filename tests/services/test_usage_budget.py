"""The usage budget of a request: what each report takes, and when a report is refused."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from models import Inbox
from services.access import Principal
from services.clock import FrozenClock
from services.errors import Forbidden, UsageBudgetExceeded
from services.runtime import Runtime
from services.usage import UsageGroupBy, account_usage, inbox_usage, member_usage
from services.usage_budget import UsageBudget
from tests.services.conftest import receive
from tests.services.test_usage import DAY, MONTH, add_member, as_principal, at

pytestmark = pytest.mark.usefixtures("db")

JANUARY = (date(2026, 1, 1), date(2026, 1, 31))


def budget(reports: int = 50, buckets: int = 20_000) -> UsageBudget:
    return UsageBudget(max_reports=reports, max_buckets=buckets)


async def test_a_report_takes_one_report_and_its_series_times_its_buckets(
    admin: Principal, clock: FrozenClock
) -> None:
    # given two more members: a MEMBER report has 3 groups besides its totals
    await add_member(admin, clock, "Ben", "+14155550101")
    await add_member(admin, clock, "Di", None)
    left = budget()
    # when
    await account_usage(
        actor=admin,
        days=JANUARY,
        granularity=DAY,
        group_by=UsageGroupBy.MEMBER,
        clock=clock,
        budget=left,
    )
    # then: 4 series of 31 days
    assert (left.spent_reports, left.spent_buckets) == (1, 4 * 31)


async def test_an_all_time_report_takes_the_buckets_from_its_first_day_with_usage(
    admin: Principal, clock: FrozenClock, runtime: Runtime, inbox: Inbox
) -> None:
    # given usage since 2025-11-20; today is 2026-01-15
    clock.set(at("2025-11-20T10:00"))
    await receive(runtime, inbox)
    clock.set(at("2026-01-15T10:00"))
    left = budget()
    # when
    await inbox_usage(
        actor=admin, inbox_id=inbox.id, days=None, granularity=MONTH, clock=clock, budget=left
    )
    # then: November, December, January
    assert left.spent_buckets == 3


async def test_a_report_past_the_buckets_left_is_refused_whole_and_takes_none(
    admin: Principal, clock: FrozenClock
) -> None:
    # given a budget with 40 buckets, 31 of them already taken
    left = budget(buckets=40)
    args: dict[str, Any] = {"days": JANUARY, "granularity": DAY, "clock": clock, "budget": left}
    await member_usage(actor=admin, member_id=admin.member_id, **args)
    # when another 31 days are asked for
    with pytest.raises(UsageBudgetExceeded) as refused:
        await member_usage(actor=admin, member_id=admin.member_id, **args)
    # then
    assert (refused.value.code, refused.value.limit, refused.value.maximum) == (
        "QUERY_TOO_COMPLEX",
        "usageBuckets",
        40,
    )
    assert (left.spent_reports, left.spent_buckets) == (2, 31)
    # a report that fits what is left still runs
    await member_usage(
        actor=admin, member_id=admin.member_id, days=(date(2026, 1, 1), date(2026, 1, 9)),
        granularity=DAY, clock=clock, budget=left,
    )  # fmt: skip
    assert left.spent_buckets == 40


async def test_a_report_past_the_count_is_refused_before_anything_is_read(
    admin: Principal, clock: FrozenClock
) -> None:
    # given a budget whose one report is taken
    left = budget(reports=1)
    args: dict[str, Any] = {"days": JANUARY, "granularity": DAY, "clock": clock, "budget": left}
    await member_usage(actor=admin, member_id=admin.member_id, **args)
    # when the next report names a member that does not exist
    with pytest.raises(UsageBudgetExceeded) as refused:
        await member_usage(actor=admin, member_id=admin.member_id + 1000, **args)
    # then it was refused before the member was looked up
    assert (refused.value.limit, refused.value.maximum) == ("usageReports", 1)
    assert "groupBy MEMBER or SHARED_INBOX" in refused.value.message


async def test_a_forbidden_report_takes_nothing(admin: Principal, clock: FrozenClock) -> None:
    # given
    ben = await add_member(admin, clock, "Ben", None)
    left = budget()
    # when a MEMBER asks for the admin's usage
    with pytest.raises(Forbidden):
        await member_usage(
            actor=as_principal(ben), member_id=admin.member_id, days=JANUARY, granularity=DAY,
            clock=clock, budget=left,
        )  # fmt: skip
    # then
    assert (left.spent_reports, left.spent_buckets) == (0, 0)


def test_a_bucket_refusal_says_what_the_report_needs_and_what_to_narrow() -> None:
    left = budget(buckets=20_000)
    left.take_buckets(series=1, buckets=5_000, granularity=DAY)

    with pytest.raises(UsageBudgetExceeded) as refused:
        left.take_buckets(series=21, buckets=731, granularity=DAY)

    assert str(refused.value) == (
        "This usage report needs 21 series of 731 DAY buckets (15,351 buckets), and this "
        "request has 15,000 of its 20,000 left. Narrow the range, use a coarser granularity, "
        "group by less, or ask for fewer reports in one request."
    )
