"""Usage reports: UsageReport and its parts, the types of Account/Member/Inbox.usage.

Every leaf is a plain attribute: a 730-day report has some 6,600 fields, and a resolver
per field would cost more than the report itself. Plain fields are also what the
executor completes in one go (schema/execution.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Annotated, cast

import strawberry

from schema.pagination import DateRangeInput
from services.calendar import Granularity
from services.usage import (
    BucketUsage,
    Figures,
    GroupUsage,
    PreviousUsage,
    Report,
    UsageGroupBy,
)

if TYPE_CHECKING:
    from schema.inboxes import Inbox
    from schema.members import Member

strawberry.enum(Granularity, description="ALL: one bucket for the whole range.")
strawberry.enum(
    UsageGroupBy,
    description=(
        "MEMBER: one group per member, over the member's personal inbox.\n"
        "SHARED_INBOX: one group per shared inbox.\n"
        "The MEMBER groups plus the SHARED_INBOX groups add up to the totals."
    ),
)

__all__ = ["Granularity", "UsageGroupBy", "UsageReport", "days_of"]


def days_of(range: DateRangeInput | None) -> tuple[date, date] | None:
    """The range argument as the services take it: (first day, last day), or None."""
    return None if range is None else (range.start, range.end)


@strawberry.type
class UsageFigures:
    segments: int
    segments_sent: int
    segments_received: int
    messages: int
    messages_sent: int
    messages_received: int


@strawberry.type
class UsageBucket:
    start: date = strawberry.field(description="First day of the bucket (clipped to the range).")
    end: date = strawberry.field(description="Last day of the bucket (clipped to the range).")
    figures: UsageFigures


# The services' Figures and BucketUsage carry every attribute of UsageFigures and
# UsageBucket under the same name (`segments` and `messages` are properties of Figures),
# and those fields have no resolver: they only read attributes. So the services' objects
# are served as they are: copying the 731 buckets of a two-year daily report took 4-9 ms
# (on 2 busy cores), passing them on takes microseconds. tests/schema/test_usage.py
# checks the names.


def _figures(figures: Figures) -> UsageFigures:
    return cast(UsageFigures, figures)


def _series(series: Sequence[BucketUsage]) -> list[UsageBucket]:
    return cast(list[UsageBucket], list(series))


@strawberry.type
class UsageGroup:
    member: Annotated[Member, strawberry.lazy("schema.members")] | None
    inbox: Annotated[Inbox, strawberry.lazy("schema.inboxes")] | None
    totals: UsageFigures
    series: list[UsageBucket]
    previous_totals: UsageFigures = strawberry.field(
        description="This group's totals over the report's previous range."
    )

    @classmethod
    def from_result(cls, group: GroupUsage) -> UsageGroup:
        # Imported here: members and inboxes import this module for their usage fields.
        from schema.inboxes import Inbox
        from schema.members import Member

        return cls(
            member=None if group.member is None else Member.from_model(group.member),
            inbox=None if group.inbox is None else Inbox.from_model(group.inbox),
            totals=_figures(group.totals),
            series=_series(group.series),
            previous_totals=_figures(group.previous_totals),
        )


@strawberry.type(
    description="The range of the same number of days that ends the day before the report's start."
)
class UsagePrevious:
    start: date
    end: date
    totals: UsageFigures

    @classmethod
    def from_result(cls, previous: PreviousUsage) -> UsagePrevious:
        return cls(start=previous.start, end=previous.end, totals=_figures(previous.totals))


@strawberry.type
class UsageReport:
    start: date
    end: date
    granularity: Granularity
    timezone: str
    totals: UsageFigures
    series: list[UsageBucket] = strawberry.field(
        description="Every bucket of the range in order, zero-filled."
    )
    groups: list[UsageGroup] = strawberry.field(
        description="Every member (or shared inbox), with zero usage too; empty for NONE."
    )
    previous: UsagePrevious = strawberry.field(description="For period-over-period comparison.")

    @classmethod
    def from_result(cls, report: Report) -> UsageReport:
        return cls(
            start=report.start,
            end=report.end,
            granularity=report.granularity,
            timezone=report.timezone,
            totals=_figures(report.totals),
            series=_series(report.series),
            groups=[UsageGroup.from_result(group) for group in report.groups],
            previous=UsagePrevious.from_result(report.previous),
        )
