"""Usage reports against a brute force: every raw message, placed by its local day in Python.

Random messages (seeded) over two years, sent and received, some refunded, across members'
personal inboxes and shared inboxes, plus instants on the edges of DST days. Each report of
every granularity (both week starts), grouping and a few random ranges is compared with an
independent computation from the message table, in several zones: the first zone is kept
message by message, the others are rebuilt by ``update_account(timezone=…)``, and more
messages arrive after a rebuild.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from models import Account, Inbox, Member, Message
from models.enums import InboxKind, Role, WeekStart
from services.access import Principal
from services.accounts import PlanTerms, create_account, update_account
from services.calendar import Granularity
from services.clock import FrozenClock
from services.inboxes import create_shared_inbox
from services.members import create_member
from services.runtime import Runtime
from services.usage import Figures, Report, UsageGroupBy, account_usage, member_usage
from tests.services.conftest import REGION, body_of, receive, report, send
from tests.services.test_usage import assert_rollups_match_messages

pytestmark = pytest.mark.usefixtures("db")

SEED = 20260115
FIRST = datetime(2024, 3, 1, tzinfo=UTC)
TODAY = datetime(2026, 1, 15, 12, tzinfo=UTC)
# (zone, local wall times on the edges of its days: DST changes, midnights that do not exist)
ZONES = [
    ("America/New_York", ["2025-03-09T23:30", "2025-03-09T00:30", "2025-11-02T00:30"]),
    (
        "Europe/London",
        ["2025-10-26T00:30", "2025-10-26T23:30", "2025-10-27T00:30", "2025-03-30T23:59"],
    ),
    ("Asia/Kolkata", ["2025-06-01T23:59", "2025-06-02T00:00", "2025-12-31T23:45"]),
    ("Pacific/Kiritimati", ["2025-06-02T00:00", "2025-06-01T23:59", "2024-12-31T23:30"]),
    # DST at midnight: 2025-09-07 starts at 01:00; 2025-04-05 has 23:00-24:00 twice.
    ("America/Santiago", ["2025-09-07T01:00", "2025-09-06T23:59", "2025-04-05T23:30"]),
]


@dataclass(frozen=True)
class World:
    actor: Principal
    personal: dict[int, int]  # inbox -> owner
    members: list[int]
    shared: list[int]
    inboxes: list[Inbox]


async def build_world(clock: FrozenClock) -> World:
    """An account with 4 members (3 with a personal inbox) and 2 shared inboxes."""
    clock.set(FIRST - timedelta(days=1))
    new = await create_account(
        name="Brute",
        admin_name="Ada",
        admin_email="ada@brute.example",
        timezone=ZONES[0][0],
        plan=PlanTerms(monthly_credits=1_000_000),
        clock=clock,
    )
    actor = Principal(new.account.id, new.admin.id, Role.ADMIN, new.token.token.id)
    for n, number in enumerate(["+14155550111", "+14155550112", None, "+14155550113"]):
        await create_member(
            actor=actor,
            name=f"M{n}",
            email=f"m{n}@brute.example",
            role=Role.MEMBER,
            personal_phone_number=number,
            region=REGION,
            clock=clock,
        )
    for number in ("+14155550121", "+14155550122"):
        await create_shared_inbox(
            actor=actor, name="S", phone_number=number, member_ids=[], region=REGION, clock=clock
        )
    inboxes = await Inbox.filter(account_id=actor.account_id).order_by("id")
    return World(
        actor=actor,
        personal={i.id: i.owner_id for i in inboxes if i.owner_id is not None},
        members=[m.id for m in await Member.filter(account_id=actor.account_id).order_by("id")],
        shared=[i.id for i in inboxes if i.kind is InboxKind.SHARED],
        inboxes=list(inboxes),
    )


async def add_messages(
    rng: random.Random, world: World, runtime: Runtime, clock: FrozenClock, instants: list[datetime]
) -> None:
    """A message at each instant (in order), either way, in a random inbox; some refunded."""
    for instant in sorted(instants):
        clock.set(instant)
        inbox = rng.choice(world.inboxes)
        body = body_of(rng.randint(1, 3))
        if rng.random() < 0.4:
            await receive(runtime, inbox, body if rng.random() < 0.9 else "")
            continue
        sent = await send(runtime, world.actor, inbox, body)
        if rng.random() < 0.2:
            await report(runtime, sent.message, delivered=False)


def random_instants(
    rng: random.Random, count: int, start: datetime, end: datetime
) -> list[datetime]:
    span = int((end - start).total_seconds())
    return [start + timedelta(seconds=rng.randrange(span)) for _ in range(count)]


def edge_instants() -> list[datetime]:
    return [
        datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
        for zone, edges in ZONES
        for local in edges
    ]


# The brute force


def bucket_key(day: date, granularity: Granularity, week_start: WeekStart) -> object:
    if granularity is Granularity.DAY:
        return day
    if granularity is Granularity.WEEK:
        first = 0 if week_start is WeekStart.MONDAY else 6
        return day - timedelta(days=(day.weekday() - first) % 7)
    if granularity is Granularity.MONTH:
        return (day.year, day.month)
    return None


def expected_series(
    days: dict[date, list[int]], start: date, end: date, granularity: Granularity, week: WeekStart
) -> list[tuple[date, date, Figures]]:
    """Walk every day of the range; a bucket is a run of days with the same key."""
    result: list[tuple[date, date, list[int]]] = []
    day, key = start, object()
    while day <= end:
        if bucket_key(day, granularity, week) != key:
            key = bucket_key(day, granularity, week)
            result.append((day, day, [0, 0, 0, 0]))
        first, _, sums = result[-1]
        result[-1] = (
            first,
            day,
            [a + b for a, b in zip(sums, days.get(day, [0] * 4), strict=True)],
        )
        day += timedelta(days=1)
    return [(first, last, Figures(*sums)) for first, last, sums in result]


async def local_days(account: Account) -> dict[int, dict[date, list[int]]]:
    """inbox -> local day -> [segments sent, received, messages sent, received]."""
    zone = ZoneInfo(account.timezone)
    result: dict[int, dict[date, list[int]]] = {}
    for message in await Message.filter(account_id=account.id):
        if message.refunded_at is not None:
            continue
        day = message.created_at.astimezone(zone).date()
        sums = result.setdefault(message.inbox_id, {}).setdefault(day, [0, 0, 0, 0])
        side = 0 if message.direction.value == "OUTBOUND" else 1
        sums[side] += message.segments
        sums[side + 2] += 1
    return result


def merged(
    per_inbox: dict[int, dict[date, list[int]]], inboxes: list[int]
) -> dict[date, list[int]]:
    result: dict[date, list[int]] = {}
    for inbox in inboxes:
        for day, sums in per_inbox.get(inbox, {}).items():
            total = result.setdefault(day, [0, 0, 0, 0])
            for i, value in enumerate(sums):
                total[i] += value
    return result


def shown(result: Report) -> list[tuple[date, date, Figures]]:
    return [(b.start, b.end, b.figures) for b in result.series]


async def check_reports(rng: random.Random, world: World, clock: FrozenClock) -> None:
    account = await Account.get(id=world.actor.account_id)
    per_inbox = await local_days(account)
    everything = merged(per_inbox, list(per_inbox))
    today = TODAY.astimezone(ZoneInfo(account.timezone)).date()
    first = min(everything)
    ranges: list[tuple[date, date] | None] = [None]
    for _ in range(2):
        a, b = sorted(first + timedelta(days=rng.randint(-40, 720)) for _ in range(2))
        ranges.append((a, b))
    ranges.append((today - timedelta(days=3), today + timedelta(days=40)))
    for granularity in Granularity:
        for group_by in UsageGroupBy:
            for days in ranges:
                result = await account_usage(
                    actor=world.actor,
                    days=days,
                    granularity=granularity,
                    group_by=group_by,
                    clock=clock,
                )
                start, end = days or (min(first, today), today)
                expect = expected_series(everything, start, end, granularity, account.week_start)
                assert (result.start, result.end) == (start, end)
                assert shown(result) == expect, (account.timezone, granularity, group_by, days)
                inside = [sums for day, sums in everything.items() if start <= day <= end]
                assert result.totals == Figures(
                    *(sum(column) for column in zip(*inside, strict=False))
                )
                await check_groups(result, world, per_inbox, account, group_by)
    await check_member_usage(world, per_inbox, account, clock)


async def check_groups(
    result: Report,
    world: World,
    per_inbox: dict[int, dict[date, list[int]]],
    account: Account,
    group_by: UsageGroupBy,
) -> None:
    if group_by is UsageGroupBy.NONE:
        assert result.groups == ()
        return
    if group_by is UsageGroupBy.MEMBER:
        keys = world.members
        assert [g.member.id for g in result.groups if g.member] == keys
        scopes = [[i for i, owner in world.personal.items() if owner == m] for m in keys]
    else:
        assert [g.inbox.id for g in result.groups if g.inbox] == world.shared
        scopes = [[i] for i in world.shared]
    for group, scope in zip(result.groups, scopes, strict=True):
        expect = expected_series(
            merged(per_inbox, scope),
            result.start,
            result.end,
            result.granularity,
            account.week_start,
        )
        assert shown_group(group.series) == expect


def shown_group(series: tuple[object, ...]) -> list[tuple[date, date, Figures]]:
    return [(b.start, b.end, b.figures) for b in series]  # type: ignore[attr-defined]


async def check_member_usage(
    world: World, per_inbox: dict[int, dict[date, list[int]]], account: Account, clock: FrozenClock
) -> None:
    today = TODAY.astimezone(ZoneInfo(account.timezone)).date()
    for member in world.members:
        scope = [i for i, owner in world.personal.items() if owner == member]
        days = merged(per_inbox, scope)
        result = await member_usage(
            actor=world.actor,
            member_id=member,
            days=None,
            granularity=Granularity.WEEK,
            clock=clock,
        )
        start = min(min(days, default=today), today)
        assert shown(result) == expected_series(
            days, start, today, Granularity.WEEK, account.week_start
        )


async def test_reports_match_a_brute_force_in_every_zone(
    clock: FrozenClock, runtime: Runtime
) -> None:
    rng = random.Random(SEED)
    world = await build_world(clock)
    middle = FIRST + (TODAY - FIRST) / 2
    # Kept message by message in the first zone.
    await add_messages(rng, world, runtime, clock, random_instants(rng, 150, FIRST, middle))
    await add_messages(rng, world, runtime, clock, edge_instants())
    clock.set(TODAY)
    await check_reports(rng, world, clock)
    for n, (zone, _) in enumerate(ZONES[1:]):
        # Rebuilt in the new zone; then more messages on top of the rebuilt rows.
        week_start = WeekStart.SUNDAY if n % 2 == 0 else WeekStart.MONDAY
        await update_account(actor=world.actor, timezone=zone, week_start=week_start, clock=clock)
        await assert_rollups_match_messages(world.actor.account_id, zone)
        if n == 0:
            later = random_instants(rng, 150, middle, TODAY)
            await add_messages(rng, world, runtime, clock, later)
            clock.set(TODAY)
            await assert_rollups_match_messages(world.actor.account_id, zone)
        await check_reports(rng, world, clock)
