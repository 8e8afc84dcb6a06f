"""Usage reports: UsageReport and its parts, the types of Account/Member/Inbox.usage.

Every leaf is a plain attribute, set once by ``from_result``: a 730-day report has some
5,000 fields, and a resolver per field would cost more than the report itself.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import strawberry

from schema.pagination import DateRangeInput
from services.calendar import Granularity
from services.usage import BucketUsage, Figures, GroupUsage, Report, UsageGroupBy

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

    @classmethod
    def from_result(cls, figures: Figures) -> UsageFigures:
        return cls(
            segments=figures.segments,
            segments_sent=figures.segments_sent,
            segments_received=figures.segments_received,
            messages=figures.messages,
            messages_sent=figures.messages_sent,
            messages_received=figures.messages_received,
        )


# Most buckets of a sparse report are empty: they all share one object.
_ZERO = UsageFigures.from_result(Figures())


def _figures(figures: Figures) -> UsageFigures:
    return _ZERO if figures == Figures() else UsageFigures.from_result(figures)


@strawberry.type
class UsageBucket:
    start: date = strawberry.field(description="First day of the bucket (clipped to the range).")
    end: date = strawberry.field(description="Last day of the bucket (clipped to the range).")
    figures: UsageFigures

    @classmethod
    def from_result(cls, bucket: BucketUsage) -> UsageBucket:
        return cls(start=bucket.start, end=bucket.end, figures=_figures(bucket.figures))


@strawberry.type
class UsageGroup:
    member: Annotated[Member, strawberry.lazy("schema.members")] | None
    inbox: Annotated[Inbox, strawberry.lazy("schema.inboxes")] | None
    totals: UsageFigures
    series: list[UsageBucket]

    @classmethod
    def from_result(cls, group: GroupUsage) -> UsageGroup:
        # Imported here: members and inboxes import this module for their usage fields.
        from schema.inboxes import Inbox
        from schema.members import Member

        return cls(
            member=None if group.member is None else Member.from_model(group.member),
            inbox=None if group.inbox is None else Inbox.from_model(group.inbox),
            totals=_figures(group.totals),
            series=[UsageBucket.from_result(bucket) for bucket in group.series],
        )


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

    @classmethod
    def from_result(cls, report: Report) -> UsageReport:
        return cls(
            start=report.start,
            end=report.end,
            granularity=report.granularity,
            timezone=report.timezone,
            totals=_figures(report.totals),
            series=[UsageBucket.from_result(bucket) for bucket in report.series],
            groups=[UsageGroup.from_result(group) for group in report.groups],
        )
