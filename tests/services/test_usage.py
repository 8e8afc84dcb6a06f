"""Usage reports, rule by rule, and the rollups they read (always a GROUP BY of the messages)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tortoise.connection import get_connection
from tortoise.models import Model

from models import Inbox, Member, Message, UsageAccountDay, UsageDay, UsageMonth
from models.enums import Role
from models.migrations import __name__ as migrations_package
from models.usage import FIGURES
from services.access import Principal
from services.accounts import NewAccount, update_account
from services.calendar import MAX_BUCKETS, Granularity, InvalidRange
from services.clock import FrozenClock
from services.errors import Forbidden, NotFound
from services.members import create_member
from services.rollups import split_months
from services.runtime import Runtime
from services.usage import Figures, Report, UsageGroupBy, account_usage, inbox_usage, member_usage
from tests.services.conftest import REGION, body_of, open_inbox, receive, report, send

pytestmark = pytest.mark.usefixtures("db")

NEW_YORK = ZoneInfo("America/New_York")
DAY, WEEK, MONTH, ALL = Granularity.DAY, Granularity.WEEK, Granularity.MONTH, Granularity.ALL


def at(local: str, zone: ZoneInfo = NEW_YORK) -> datetime:
    """A wall-clock time in ``zone`` as an aware instant."""
    return datetime.fromisoformat(local).replace(tzinfo=zone)


def figures(
    sent: int = 0, received: int = 0, *, segments: tuple[int, int] | None = None
) -> Figures:
    """``sent``/``received`` messages of one segment each, unless ``segments`` says otherwise."""
    seg_sent, seg_received = segments or (sent, received)
    return Figures(seg_sent, seg_received, sent, received)


def series(result: Report) -> list[tuple[date, date, Figures]]:
    return [(b.start, b.end, b.figures) for b in result.series]


async def add_member(admin: Principal, clock: FrozenClock, name: str, number: str | None) -> Member:
    return await create_member(
        actor=admin,
        name=name,
        email=f"{name.lower()}@acme.example",
        role=Role.MEMBER,
        personal_phone_number=number,
        region=REGION,
        clock=clock,
    )


def as_principal(member: Member) -> Principal:
    return Principal(
        account_id=member.account_id, member_id=member.id, role=member.role, token_id=0
    )


async def usage(admin: Principal, clock: FrozenClock, **kwargs: Any) -> Report:
    kwargs.setdefault("days", None)
    kwargs.setdefault("granularity", DAY)
    kwargs.setdefault("group_by", UsageGroupBy.NONE)
    return await account_usage(actor=admin, clock=clock, **kwargs)


Rollups = tuple[dict[Any, list[int]], dict[Any, list[int]], dict[Any, list[int]]]


async def rollup_rows(account_id: int) -> Rollups:
    """The rollup tables of an account as {(inbox or account, day or month): figures}."""
    levels: list[tuple[type[Model], str, str]] = [
        (UsageDay, "inbox_id", "day"),
        (UsageMonth, "inbox_id", "month"),
        (UsageAccountDay, "account_id", "day"),
    ]
    result: Rollups = ({}, {}, {})
    for rows, (model, owner, column) in zip(result, levels, strict=True):
        for row in await model.filter(account_id=account_id):
            key = (getattr(row, owner), getattr(row, column))
            rows[key] = [getattr(row, figure) for figure in FIGURES]
    return result


async def grouped_messages(account_id: int, zone: ZoneInfo) -> Rollups:
    """The same, computed from every message that was not refunded."""
    result: Rollups = ({}, {}, {})
    for message in await Message.filter(account_id=account_id, refunded_at__isnull=True):
        day = message.created_at.astimezone(zone).date()
        side = 0 if message.direction.value == "OUTBOUND" else 1
        keys = ((message.inbox_id, day), (message.inbox_id, day.replace(day=1)), (account_id, day))
        for rows, key in zip(result, keys, strict=True):
            sums = rows.setdefault(key, [0, 0, 0, 0])
            sums[side] += message.segments
            sums[side + 2] += 1
    return result


async def assert_rollups_match_messages(account_id: int, timezone: str) -> None:
    assert await rollup_rows(account_id) == await grouped_messages(account_id, ZoneInfo(timezone))


# Buckets: zero-filled and clipped


async def test_day_series_is_zero_filled_and_counts_both_directions(
    admin: Principal, clock: FrozenClock, runtime: Runtime, inbox: Inbox
) -> None:
    # given
    clock.set(at("2026-01-13T09:00"))
    await send(runtime, admin, inbox, body_of(2))
    await receive(runtime, inbox)
    clock.set(at("2026-01-15T06:00"))
    await receive(runtime, inbox, body_of(3))
    # when
    result = await usage(admin, clock, days=(date(2026, 1, 12), date(2026, 1, 15)))
    # then
    assert series(result) == [
        (date(2026, 1, 12), date(2026, 1, 12), Figures()),
        (date(2026, 1, 13), date(2026, 1, 13), figures(1, 1, segments=(2, 1))),
        (date(2026, 1, 14), date(2026, 1, 14), Figures()),
        (date(2026, 1, 15), date(2026, 1, 15), figures(0, 1, segments=(0, 3))),
    ]
    assert result.totals == figures(1, 2, segments=(2, 4))
    assert result.totals.segments == 6
    assert result.totals.messages == 3
    assert (result.start, result.end, result.timezone) == (
        date(2026, 1, 12),
        date(2026, 1, 15),
        "America/New_York",
    )


async def test_week_and_month_buckets_are_clipped_to_the_range(
    admin: Principal, clock: FrozenClock, runtime: Runtime, inbox: Inbox
) -> None:
    # given: one message just outside each end of the range, and one on each end
    for local in ("2025-12-09T12:00", "2025-12-10T00:10", "2026-01-10T23:50", "2026-01-11T00:10"):
        clock.set(at(local))
        await receive(runtime, inbox)
    clock.set(at("2026-01-15T12:00"))
    days = (date(2025, 12, 10), date(2026, 1, 10))
    # when
    weeks = await usage(admin, clock, days=days, granularity=WEEK)
    months = await usage(admin, clock, days=days, granularity=MONTH)
    whole = await usage(admin, clock, days=days, granularity=ALL)
    # then: the account's weeks start on Monday; 2025-12-10 is a Wednesday
    assert series(weeks)[0] == (date(2025, 12, 10), date(2025, 12, 14), figures(0, 1))
    assert series(weeks)[-1] == (date(2026, 1, 5), date(2026, 1, 10), figures(0, 1))
    assert len(weeks.series) == 5
    assert series(months) == [
        (date(2025, 12, 10), date(2025, 12, 31), figures(0, 1)),
        (date(2026, 1, 1), date(2026, 1, 10), figures(0, 1)),
    ]
    assert series(whole) == [(days[0], days[1], figures(0, 2))]


async def test_month_report_reads_whole_months_and_clipped_ends_alike(
    admin: Principal, clock: FrozenClock, runtime: Runtime, inbox: Inbox
) -> None:
    # given: messages on both ends of three months
    for local in ("2025-10-01T00:05", "2025-10-31T23:55", "2025-11-01T00:05", "2025-12-31T23:55"):
        clock.set(at(local))
        await receive(runtime, inbox)
    clock.set(at("2026-01-15T12:00"))
    # when
    whole = await usage(
        admin, clock, days=(date(2025, 10, 1), date(2025, 12, 31)), granularity=MONTH
    )
    inner = await usage(
        admin, clock, days=(date(2025, 10, 2), date(2025, 12, 30)), granularity=MONTH
    )
    # then
    assert [b.figures.messages for b in whole.series] == [2, 1, 1]
    assert [b.figures.messages for b in inner.series] == [1, 1, 0]


def test_split_months_covers_every_day_once() -> None:
    assert split_months(date(2026, 1, 1), date(2026, 1, 31)) == ([(date(2026, 1, 1),) * 2], [])
    assert split_months(date(2026, 1, 2), date(2026, 1, 31)) == (
        [],
        [(date(2026, 1, 2), date(2026, 1, 31))],
    )
    assert split_months(date(2025, 11, 15), date(2026, 2, 10)) == (
        [(date(2025, 12, 1), date(2026, 1, 1))],
        [(date(2025, 11, 15), date(2025, 11, 30)), (date(2026, 2, 1), date(2026, 2, 10))],
    )
    assert split_months(date(2025, 11, 15), date(2025, 12, 10)) == (
        [],
        [(date(2025, 11, 15), date(2025, 11, 30)), (date(2025, 12, 1), date(2025, 12, 10))],
    )
    assert split_months(date.min, date.max) == ([(date.min, date(9999, 12, 1))], [])
    assert split_months(date(9999, 12, 2), date.max) == ([], [(date(9999, 12, 2), date.max)])


# Groups


async def test_groups_list_everyone_and_add_up_to_the_totals_bucket_by_bucket(
    admin: Principal, clock: FrozenClock, runtime: Runtime
) -> None:
    # given: Ben has usage, Cy has a quiet personal inbox, Di has none; two shared inboxes
    ben = await add_member(admin, clock, "Ben", "+14155550101")
    cy = await add_member(admin, clock, "Cy", "+14155550102")
    di = await add_member(admin, clock, "Di", None)
    busy = await open_inbox(admin, clock, number="+14155550103")
    quiet = await open_inbox(admin, clock, number="+14155550104")
    ben_inbox = await Inbox.get(owner_id=ben.id)
    clock.set(at("2026-01-14T10:00"))
    await send(runtime, admin, ben_inbox, body_of(2))
    await receive(runtime, busy)
    clock.set(at("2026-01-15T10:00"))
    await receive(runtime, ben_inbox)
    await send(runtime, admin, busy)
    days = (date(2026, 1, 13), date(2026, 1, 15))
    # when
    by_member = await usage(admin, clock, days=days, group_by=UsageGroupBy.MEMBER)
    by_inbox = await usage(admin, clock, days=days, group_by=UsageGroupBy.SHARED_INBOX)
    plain = await usage(admin, clock, days=days)
    # then
    assert [g.member.id for g in by_member.groups if g.member] == [
        admin.member_id,
        ben.id,
        cy.id,
        di.id,
    ]
    assert all(g.inbox is None for g in by_member.groups)
    assert [g.totals for g in by_member.groups] == [
        Figures(),
        figures(1, 1, segments=(2, 1)),
        Figures(),
        Figures(),
    ]
    assert [g.inbox.id for g in by_inbox.groups if g.inbox] == [busy.id, quiet.id]
    assert [g.totals for g in by_inbox.groups] == [figures(1, 1), Figures()]
    assert plain.groups == ()
    assert by_member.totals == by_inbox.totals == plain.totals
    for index, bucket in enumerate(plain.series):
        parts = [g.series[index] for g in (*by_member.groups, *by_inbox.groups)]
        assert all((p.start, p.end) == (bucket.start, bucket.end) for p in parts)
        assert sum(p.figures.segments for p in parts) == bucket.figures.segments
        assert sum(p.figures.messages_sent for p in parts) == bucket.figures.messages_sent
        assert sum(p.figures.messages_received for p in parts) == bucket.figures.messages_received
    assert [b.figures.messages for b in by_member.groups[1].series] == [0, 1, 1]


async def test_member_usage_is_its_member_group(
    admin: Principal, clock: FrozenClock, runtime: Runtime
) -> None:
    # given
    ben = await add_member(admin, clock, "Ben", "+14155550101")
    di = await add_member(admin, clock, "Di", None)
    ben_inbox = await Inbox.get(owner_id=ben.id)
    clock.set(at("2025-12-30T22:00"))
    await receive(runtime, ben_inbox, body_of(2))
    clock.set(at("2026-01-15T07:00"))
    await send(runtime, admin, ben_inbox)
    # when
    own = await member_usage(
        actor=as_principal(ben), member_id=ben.id, days=None, granularity=WEEK, clock=clock
    )
    grouped = await usage(
        admin, clock, days=(own.start, own.end), granularity=WEEK, group_by=UsageGroupBy.MEMBER
    )
    nothing = await member_usage(
        actor=admin, member_id=di.id, days=None, granularity=DAY, clock=clock
    )
    inbox = await inbox_usage(
        actor=admin, inbox_id=ben_inbox.id, days=None, granularity=WEEK, clock=clock
    )
    # then
    group = next(g for g in grouped.groups if g.member and g.member.id == ben.id)
    assert (own.totals, own.series) == (group.totals, group.series)
    assert own.start == date(2025, 12, 30)
    assert own.totals == figures(1, 1, segments=(1, 2))
    assert (inbox.start, inbox.totals, inbox.series) == (own.start, own.totals, own.series)
    assert (nothing.start, nothing.end, nothing.totals) == (
        date(2026, 1, 15),
        date(2026, 1, 15),
        Figures(),
    )


async def test_reading_usage_needs_the_right_role_and_account(
    admin: Principal, clock: FrozenClock, inbox: Inbox
) -> None:
    ben = await add_member(admin, clock, "Ben", "+14155550101")
    cy = await add_member(admin, clock, "Cy", None)
    args: dict[str, Any] = {"days": None, "granularity": DAY, "clock": clock}
    with pytest.raises(Forbidden):
        await member_usage(actor=as_principal(ben), member_id=cy.id, **args)
    with pytest.raises(Forbidden):
        await usage(as_principal(ben), clock)
    with pytest.raises(Forbidden):
        await inbox_usage(actor=as_principal(ben), inbox_id=inbox.id, **args)
    with pytest.raises(NotFound):
        await member_usage(actor=admin, member_id=cy.id + 1000, **args)
    with pytest.raises(NotFound):
        await inbox_usage(actor=admin, inbox_id=inbox.id + 1000, **args)


# All time, and ranges that are refused


async def test_no_range_runs_from_the_first_day_with_usage_to_today(
    admin: Principal, clock: FrozenClock, runtime: Runtime, inbox: Inbox
) -> None:
    # given: the first message, on 2025-11-03 in New York
    clock.set(at("2025-11-03T01:30"))
    await receive(runtime, inbox)
    clock.set(at("2026-01-15T23:59"))
    # when
    result = await usage(admin, clock, granularity=MONTH)
    # then
    assert (result.start, result.end) == (date(2025, 11, 3), date(2026, 1, 15))
    assert [(b.start, b.end) for b in result.series] == [
        (date(2025, 11, 3), date(2025, 11, 30)),
        (date(2025, 12, 1), date(2025, 12, 31)),
        (date(2026, 1, 1), date(2026, 1, 15)),
    ]
    assert result.totals == figures(0, 1)


async def test_an_account_without_usage_reports_today_only(
    admin: Principal, clock: FrozenClock
) -> None:
    # 2026-01-16 02:00 UTC is still the 15th in New York
    clock.set(datetime(2026, 1, 16, 2, tzinfo=UTC))
    result = await usage(admin, clock, group_by=UsageGroupBy.MEMBER)
    assert series(result) == [(date(2026, 1, 15), date(2026, 1, 15), Figures())]
    assert [g.totals for g in result.groups] == [Figures()]


async def test_reversed_and_too_long_ranges_are_invalid(
    admin: Principal, clock: FrozenClock
) -> None:
    with pytest.raises(InvalidRange) as reversed_range:
        await usage(admin, clock, days=(date(2026, 1, 2), date(2026, 1, 1)))
    start = date(2020, 1, 1)
    with pytest.raises(InvalidRange) as too_long:
        await usage(admin, clock, days=(start, date.fromordinal(start.toordinal() + MAX_BUCKETS)))
    longest = await usage(
        admin, clock, days=(start, date.fromordinal(start.toordinal() + MAX_BUCKETS - 1))
    )
    assert reversed_range.value.field == "range.end"
    assert too_long.value.field == "range"
    assert len(longest.series) == MAX_BUCKETS
    assert len((await usage(admin, clock, days=(date.min, date.max), granularity=ALL)).series) == 1


# The rollups


async def test_refunded_messages_no_longer_count(
    admin: Principal, clock: FrozenClock, runtime: Runtime, inbox: Inbox, account: NewAccount
) -> None:
    # given
    kept = await send(runtime, admin, inbox, body_of(2))
    failed = await send(runtime, admin, inbox, body_of(3))
    # when
    await report(runtime, failed.message, delivered=False)
    await report(runtime, kept.message, delivered=True)
    # then
    result = await usage(admin, clock)
    assert result.totals == figures(1, 0, segments=(2, 0))
    await assert_rollups_match_messages(account.account.id, "America/New_York")


async def test_a_refund_that_empties_a_day_removes_its_rows(
    admin: Principal, clock: FrozenClock, runtime: Runtime, inbox: Inbox, account: NewAccount
) -> None:
    failed = await send(runtime, admin, inbox)
    await report(runtime, failed.message, delivered=False)
    assert await rollup_rows(account.account.id) == ({}, {}, {})
    assert (await usage(admin, clock)).totals == Figures()


async def test_rollups_equal_a_group_by_over_the_messages(
    admin: Principal, clock: FrozenClock, runtime: Runtime, inbox: Inbox, account: NewAccount
) -> None:
    # given: sends, receives and refunds over a few days, into two inboxes
    ben = await add_member(admin, clock, "Ben", "+14155550101")
    ben_inbox = await Inbox.get(owner_id=ben.id)
    for step, local in enumerate(["2025-12-31T23:30", "2026-01-01T00:30", "2026-01-14T23:59"]):
        clock.set(at(local))
        for box in (inbox, ben_inbox):
            sent = await send(runtime, admin, box, body_of(step + 1))
            await receive(runtime, box, body_of(step + 2))
            if step != 1:
                await report(runtime, sent.message, delivered=step == 0)
    # then
    await assert_rollups_match_messages(account.account.id, "America/New_York")
    days, months, account_days = await rollup_rows(account.account.id)
    assert len(days) == 6
    assert len(months) == 4
    assert len(account_days) == 3


async def test_a_new_timezone_regroups_the_whole_history(
    admin: Principal, clock: FrozenClock, runtime: Runtime, inbox: Inbox, account: NewAccount
) -> None:
    # given: 23:30 on New Year's Eve in New York is 04:30 on New Year's Day in London
    clock.set(at("2025-12-31T23:30"))
    await receive(runtime, inbox)
    failed = await send(runtime, admin, inbox)
    await report(runtime, failed.message, delivered=False)
    days = (date(2025, 12, 31), date(2026, 1, 1))
    before = await usage(admin, clock, days=days, granularity=MONTH)
    # when
    await update_account(actor=admin, timezone="Europe/London", clock=clock)
    # then
    after = await usage(admin, clock, days=days, granularity=MONTH)
    assert [b.figures.messages for b in before.series] == [1, 0]
    assert [b.figures.messages for b in after.series] == [0, 1]
    assert after.timezone == "Europe/London"
    await assert_rollups_match_messages(account.account.id, "Europe/London")


async def test_messages_racing_a_timezone_change_are_counted_once_in_the_new_zone(
    admin: Principal, clock: FrozenClock, runtime: Runtime, inbox: Inbox, account: NewAccount
) -> None:
    # given: messages at 23:30 in New York, the next day in London
    clock.set(at("2025-12-31T23:30"))

    async def traffic() -> None:
        for n in range(8):
            if n % 2:
                await receive(runtime, inbox)
            else:
                sent = await send(runtime, admin, inbox)
                await report(runtime, sent.message, delivered=n % 4 == 0)

    # when
    await asyncio.gather(
        traffic(),
        traffic(),
        update_account(actor=admin, timezone="Europe/London", clock=clock),
        traffic(),
    )
    # then
    await assert_rollups_match_messages(account.account.id, "Europe/London")
    result = await usage(admin, clock, days=(date(2025, 12, 31), date(2026, 1, 1)))
    assert [b.figures.messages for b in result.series] == [0, 18]


async def test_the_migration_counts_messages_stored_before_the_rollups(
    admin: Principal, clock: FrozenClock, runtime: Runtime, inbox: Inbox, account: NewAccount
) -> None:
    # given: messages, and rollups as a database upgraded from 0002 has them (none)
    await send(runtime, admin, inbox, body_of(2))
    failed = await send(runtime, admin, inbox)
    await report(runtime, failed.message, delivered=False)
    clock.set(at("2026-02-01T00:30"))
    await receive(runtime, inbox)
    for model in (UsageDay, UsageMonth, UsageAccountDay):
        await model.all().delete()
    migration = __import__(f"{migrations_package}.0003_usage", fromlist=["backfill_usage"])
    # when
    await migration.backfill_usage(None, SimpleNamespace(client=get_connection("default")))
    # then
    await assert_rollups_match_messages(account.account.id, "America/New_York")
