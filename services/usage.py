"""Usage reports: segments and messages per bucket of local days, read from the rollups.

Reports never read the message table: the rollups (models/usage.py, kept by
services/rollups.py) already hold the totals per local day and month in the account's zone,
per inbox and per account. SQL sums the rows a report needs by day, week or month (and by
inbox for groups); Python drops each sum into its bucket with ``calendar.bucket_index``, in
constant time, and leaves zeros in the buckets nothing fell into. So a report costs the same
for ten messages or ten million: it reads at most one row per inbox (or account) and day.

Rules (docs/usage-rollups.md, RULES.md "Usage analytics"): a range is inclusive local days;
no range means from the first day with usage in the report's scope (or today) to today.
MEMBER groups cover personal inboxes and SHARED_INBOX groups shared ones, so together they
add up to the totals, bucket by bucket.

A report given the request's budget (services/usage_budget.py) counts itself before it
reads anything and takes its series times its buckets before it sums any rollup.

Round trips (about 0.4 ms each on PostgreSQL) are most of a short report, so each is
counted: the account's calendar comes from the row the caller already read, or in the
statement that finds the member or inbox; the groups come in one statement; then one
statement of sums (two when grouped). tests/services/test_usage_round_trips.py holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum
from functools import partial
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from tortoise.expressions import F

from models import Account, Inbox, Member
from models.enums import InboxKind
from services.access import Principal, require_admin
from services.calendar import (
    Bucket,
    Granularity,
    WeekStart,
    bucket_count,
    bucket_index,
    buckets,
    local_day,
)
from services.clock import Clock
from services.errors import Forbidden, NotFound
from services.rollups import as_date, first_usage_day, usage_sums
from services.usage_budget import UsageBudget

__all__ = [
    "BucketUsage",
    "Figures",
    "GroupUsage",
    "PreviousUsage",
    "Report",
    "UsageGroupBy",
    "account_usage",
    "inbox_usage",
    "member_usage",
    "previous_range",
]


class UsageGroupBy(Enum):
    NONE = "NONE"
    MEMBER = "MEMBER"
    SHARED_INBOX = "SHARED_INBOX"


# Figures and BucketUsage are named tuples rather than frozen dataclasses: as immutable,
# and made in half the time (a frozen dataclass sets each field through
# object.__setattr__), which counts at two per bucket, 1,462 for a two-year daily report.


class Figures(NamedTuple):
    """Segments and messages, sent (OUTBOUND) and received (INBOUND)."""

    segments_sent: int = 0
    segments_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0

    @property
    def segments(self) -> int:
        return self.segments_sent + self.segments_received

    @property
    def messages(self) -> int:
        return self.messages_sent + self.messages_received


ZERO = Figures()
_NOTHING = [0, 0, 0, 0]


class BucketUsage(NamedTuple):
    """The figures of local days ``start`` through ``end`` (clipped to the report range)."""

    start: date
    end: date
    figures: Figures


@dataclass(frozen=True, slots=True)
class GroupUsage:
    """One member (over its personal inbox) or one shared inbox; the other is None."""

    member: Member | None
    inbox: Inbox | None
    totals: Figures
    series: tuple[BucketUsage, ...]
    # This group's totals over the report's previous range.
    previous_totals: Figures


@dataclass(frozen=True, slots=True)
class PreviousUsage:
    """The range of as many days that ends the day before the report's start, and its totals."""

    start: date
    end: date
    totals: Figures


@dataclass(frozen=True, slots=True)
class Report:
    start: date
    end: date
    granularity: Granularity
    timezone: str
    totals: Figures
    series: tuple[BucketUsage, ...]
    groups: tuple[GroupUsage, ...]
    previous: PreviousUsage


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a report needs of its account: whose rollups, and its calendar."""

    account_id: int
    timezone: str
    week_start: WeekStart


@dataclass(frozen=True, slots=True)
class _Target:
    """A group before it has figures: who it is and the inboxes it sums."""

    member: Member | None
    inbox: Inbox | None
    inbox_ids: tuple[int, ...]


# Sums of one bucket: [segments sent, segments received, messages sent, messages received].
_Cells = list[list[int]]


async def account_usage(
    *,
    actor: Principal,
    days: tuple[date, date] | None,
    granularity: Granularity,
    group_by: UsageGroupBy,
    clock: Clock,
    account: Account | None = None,
    budget: UsageBudget | None = None,
) -> Report:
    """The account's usage (ADMIN), in segments and messages, grouped as asked.

    ``account``: the actor's account row when the caller has read it already (one round
    trip less). ``budget``: the request's (None: not metered, e.g. exports).
    """
    require_admin(actor, "read the account's usage")
    _count_report(budget)
    if account is None:
        account = await Account.get(id=actor.account_id)
    elif account.id != actor.account_id:
        raise NotFound("No such account.")
    scope = _Scope(account.id, account.timezone, WeekStart(account.week_start))
    targets = await _targets(account.id, group_by)
    return await _report(scope, None, targets, days, granularity, clock, budget)


async def member_usage(
    *,
    actor: Principal,
    member_id: int,
    days: tuple[date, date] | None,
    granularity: Granularity,
    clock: Clock,
    budget: UsageBudget | None = None,
) -> Report:
    """A member's usage over its personal inbox (zeros without one): for itself or an ADMIN."""
    if not actor.is_admin and actor.member_id != member_id:
        raise Forbidden("Only the member itself or an admin may read a member's usage.")
    _count_report(budget)
    # One round trip: the member (or none), its account's calendar and the inboxes it owns.
    rows = await Member.filter(id=member_id, account_id=actor.account_id).values(
        "account__timezone", "account__week_start", "personal_inboxes__id", "personal_inboxes__kind"
    )
    if not rows:
        raise NotFound.unknown("member_id")
    owned = ((r["personal_inboxes__id"], r["personal_inboxes__kind"]) for r in rows)
    inbox_ids = tuple(sorted(i for i, kind in owned if kind == InboxKind.PERSONAL))
    scope = _scope_of(actor.account_id, rows[0])
    return await _report(scope, inbox_ids, [], days, granularity, clock, budget)


async def inbox_usage(
    *,
    actor: Principal,
    inbox_id: int,
    days: tuple[date, date] | None,
    granularity: Granularity,
    clock: Clock,
    budget: UsageBudget | None = None,
) -> Report:
    """One inbox's usage (ADMIN), in segments and messages."""
    require_admin(actor, "read an inbox's usage")
    _count_report(budget)
    # One round trip: the inbox exists in the account, and the account's calendar.
    rows = await Inbox.filter(id=inbox_id, account_id=actor.account_id).values(
        "account__timezone", "account__week_start"
    )
    if not rows:
        raise NotFound.unknown("inbox_id")
    scope = _scope_of(actor.account_id, rows[0])
    return await _report(scope, (inbox_id,), [], days, granularity, clock, budget)


def _count_report(budget: UsageBudget | None) -> None:
    """Count the report before anything is read: a request over its count fails cheaply."""
    if budget is not None:
        budget.open_report()


def _scope_of(account_id: int, row: dict[str, Any]) -> _Scope:
    """The scope from a row that joined the account's ``timezone`` and ``week_start``."""
    return _Scope(account_id, row["account__timezone"], WeekStart(row["account__week_start"]))


async def _targets(account_id: int, group_by: UsageGroupBy) -> list[_Target]:
    """The report's groups, in id order: every member, or every shared inbox."""
    if group_by is UsageGroupBy.SHARED_INBOX:
        shared = await Inbox.filter(account_id=account_id, kind=InboxKind.SHARED).order_by("id")
        return [_Target(None, inbox, (inbox.id,)) for inbox in shared]
    if group_by is UsageGroupBy.NONE:
        return []
    # One round trip: each member once per inbox it owns (once, with None, when none).
    rows = (
        await Member.filter(account_id=account_id)
        .annotate(owned_id=F("personal_inboxes__id"), owned_kind=F("personal_inboxes__kind"))
        .order_by("id", "owned_id")
    )
    owned: dict[int, list[int]] = {}
    members: list[Member] = []
    for row in rows:
        if row.id not in owned:
            owned[row.id] = []
            members.append(row)
        # Annotations are set on the instances; the model does not declare them.
        if row.owned_kind == InboxKind.PERSONAL:  # type: ignore[attr-defined]
            owned[row.id].append(row.owned_id)  # type: ignore[attr-defined]
    return [_Target(member, None, tuple(owned[member.id])) for member in members]


async def _report(
    scope: _Scope,
    inbox_ids: tuple[int, ...] | None,
    targets: Sequence[_Target],
    days: tuple[date, date] | None,
    granularity: Granularity,
    clock: Clock,
    budget: UsageBudget | None,
) -> Report:
    """The report over ``inbox_ids`` (None: the whole account), with a group per target."""
    start, end = days or await _all_time(scope, inbox_ids, clock)
    # Validates the range (order, bucket count) before anything is summed.
    count = bucket_count(start, end, granularity, scope.week_start)
    if budget is not None:
        # The totals' series and one per group, each with every bucket.
        budget.take_buckets(series=1 + len(targets), buckets=count, granularity=granularity)
    spans = buckets(start, end, granularity, scope.week_start)
    previous = previous_range(start, end)
    sums = partial(
        usage_sums,
        scope.account_id,
        start=start,
        end=end,
        granularity=granularity,
        week_start=scope.week_start,
        previous=previous,
    )
    place = partial(
        _place,
        start=start,
        granularity=granularity,
        week_start=scope.week_start,
        previous_at=len(spans),
    )
    # One cell per bucket, and one more (the last) for the previous range.
    totals = _zeros(len(spans) + 1)
    if inbox_ids != ():
        place(await sums(inbox_ids), lambda _: totals)
    groups = [_zeros(len(spans) + 1) for _ in targets]
    group_of = {
        i: cells for target, cells in zip(targets, groups, strict=True) for i in target.inbox_ids
    }
    if group_of:
        # Only the groups' own inboxes: a MEMBER report never reads the shared ones.
        place(await sums(tuple(sorted(group_of)), by_inbox=True), group_of.__getitem__)
    return Report(
        start=start,
        end=end,
        granularity=granularity,
        timezone=scope.timezone,
        totals=_sum(totals[:-1]),
        series=_series(spans, totals[:-1]),
        groups=tuple(
            GroupUsage(
                t.member,
                t.inbox,
                _sum(cells[:-1]),
                _series(spans, cells[:-1]),
                _figures(cells[-1]),
            )
            for t, cells in zip(targets, groups, strict=True)
        ),
        previous=PreviousUsage(*previous, _figures(totals[-1])),
    )


def previous_range(start: date, end: date) -> tuple[date, date]:
    """The range of as many days as ``[start, end]`` that ends the day before ``start``.

    Clipped at the first day the calendar has (a report can hardly start there).
    """
    if start == date.min:
        return start, start
    length = end - start + timedelta(days=1)
    first = start - min(length, start - date.min)
    return first, start - timedelta(days=1)


def _place(
    rows: Sequence[Sequence[Any]],
    cells_of: Callable[[Any], _Cells],
    *,
    start: date,
    granularity: Granularity,
    week_start: WeekStart,
    previous_at: int,
) -> None:
    """Add each row's figures to its bucket in the cells of its inbox (``cells_of``); a row
    dated before ``start`` sums the previous range, whose cell is at ``previous_at``."""
    # Rows of one day (one per inbox, when grouping) share their bucket: found once.
    positions: dict[object, int] = {}
    for day, inbox_id, segments_sent, segments_received, sent, received in rows:
        index = positions.get(day)
        if index is None:
            local = as_date(day)
            if local < start:
                index = previous_at
            else:
                index = bucket_index(local, start, granularity, week_start)
            positions[day] = index
        cell = cells_of(inbox_id)[index]
        cell[0] += segments_sent
        cell[1] += segments_received
        cell[2] += sent
        cell[3] += received


def _zeros(count: int) -> _Cells:
    return [[0, 0, 0, 0] for _ in range(count)]


def _figures(cell: list[int]) -> Figures:
    return ZERO if cell == _NOTHING else Figures._make(cell)


def _sum(cells: _Cells) -> Figures:
    return _figures([sum(column) for column in zip(*cells, strict=True)] or [0, 0, 0, 0])


def _series(spans: Sequence[Bucket], cells: _Cells) -> tuple[BucketUsage, ...]:
    return tuple(
        BucketUsage(span.start, span.end, _figures(cell))
        for span, cell in zip(spans, cells, strict=True)
    )


async def _all_time(
    scope: _Scope, inbox_ids: tuple[int, ...] | None, clock: Clock
) -> tuple[date, date]:
    """From the scope's first day with usage (or today) to today, in the account's zone."""
    today = local_day(clock.now(), ZoneInfo(scope.timezone))
    first = None if inbox_ids == () else await first_usage_day(scope.account_id, inbox_ids)
    return min(first or today, today), today
