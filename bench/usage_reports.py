"""The cases of bench/usage.py, and one comparable shape for a report from either side.

A report, whether it came back from Tally over GraphQL or was put together from a plain
GROUP BY, becomes a ``Shape``: (start, end, totals, series, groups), each figure a tuple of
the six numbers in ``FIGURES`` order, each group keyed ("member"|"inbox", id). Equal shapes
mean every bucket of the series and every bucket of every group carries the same figures.
"""

from __future__ import annotations

from calendar import monthrange
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

# The six numbers of UsageFigures, in this order everywhere.
FIGURES = ("segments", "segmentsSent", "segmentsReceived", "messages", "messagesSent",
           "messagesReceived")  # fmt: skip

# What an analytics screen asks for: the range, totals and every bucket with all six
# figures, and every group with its totals and series.
DOCUMENT = (
    "query Usage($range: DateRangeInput, $granularity: Granularity!, $groupBy: UsageGroupBy!) {"
    " account { usage(range: $range, granularity: $granularity, groupBy: $groupBy) {"
    " start end granularity timezone totals { ...F } series { start end figures { ...F } }"
    " groups { member { id } inbox { id } totals { ...F } series { start end figures { ...F } } }"
    " } } }"
    " fragment F on UsageFigures { " + " ".join(FIGURES) + " }"
)

# The same, with the period-over-period comparison: the previous range and each group's
# totals over it (bench/usage.py times it side by side with DOCUMENT).
PREVIOUS_DOCUMENT = DOCUMENT.replace(
    " groups { member { id }", " previous { start end totals { ...F } } groups { member { id }"
).replace(" series { start end figures { ...F } } } } } }", " series { start end figures"
          " { ...F } } previousTotals { ...F } } } } }")  # fmt: skip
assert PREVIOUS_DOCUMENT.count("previous") == 2, "DOCUMENT changed: update PREVIOUS_DOCUMENT"

FORECAST_DOCUMENT = (
    "query Forecast { account { forecast {"
    " status dailyBurn basedOnDays runOutDate subscriptionCreditsExpiring } } }"
)

Figures = tuple[int, int, int, int, int, int]
Bucket = tuple[str, str, Figures]
ZERO: Figures = (0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    granularity: str  # DAY | MONTH
    group_by: str  # NONE | MEMBER
    last_days: int | None  # the range: the last N local days up to today; None: all time

    def variables(self, today: date) -> dict[str, Any]:
        variables: dict[str, Any] = {"granularity": self.granularity, "groupBy": self.group_by}
        if self.last_days is not None:
            start = today - timedelta(days=self.last_days - 1)
            variables["range"] = {"start": start.isoformat(), "end": today.isoformat()}
        return variables


CASES = (
    Case("a", "90 days by DAY", "DAY", "NONE", 90),
    Case("b", "all time by MONTH, groupBy MEMBER", "MONTH", "MEMBER", None),
    Case("c", "all time by DAY", "DAY", "NONE", None),
)


@dataclass(frozen=True)
class Shape:
    start: str
    end: str
    totals: Figures
    series: tuple[Bucket, ...]
    groups: tuple[tuple[str, str, Figures, tuple[Bucket, ...]], ...]

    def first_difference(self, other: Shape) -> str | None:
        """A readable description of the first place the two differ, or None."""
        if (self.start, self.end) != (other.start, other.end):
            return f"range {self.start}..{self.end} != {other.start}..{other.end}"
        if self.totals != other.totals:
            return f"totals {self.totals} != {other.totals}"
        for where, mine, theirs in [("series", self.series, other.series)] + [
            (f"group {a[0]} {a[1]} / {b[0]} {b[1]}", a[3], b[3])
            for a, b in zip(self.groups, other.groups, strict=False)
        ]:
            if len(mine) != len(theirs):
                return f"{where}: {len(mine)} buckets != {len(theirs)}"
            for x, y in zip(mine, theirs, strict=True):
                if x != y:
                    return f"{where}: bucket {x} != {y}"
        if len(self.groups) != len(other.groups):
            return f"{len(self.groups)} groups != {len(other.groups)}"
        for a, b in zip(self.groups, other.groups, strict=True):
            if a[:3] != b[:3]:
                return f"group {a[:3]} != {b[:3]}"
        return None if self == other else "shapes differ"


def _figures(node: dict[str, int]) -> Figures:
    return tuple(node[name] for name in FIGURES)  # type: ignore[return-value]


def _series(nodes: list[dict[str, Any]]) -> tuple[Bucket, ...]:
    return tuple((n["start"], n["end"], _figures(n["figures"])) for n in nodes)


def from_graphql(report: dict[str, Any]) -> Shape:
    groups = []
    for group in report["groups"]:
        kind, who = ("member", group["member"]) if group["member"] else ("inbox", group["inbox"])
        groups.append((kind, str(who["id"]), _figures(group["totals"]), _series(group["series"])))
    return Shape(
        start=report["start"],
        end=report["end"],
        totals=_figures(report["totals"]),
        series=_series(report["series"]),
        groups=tuple(groups),
    )


# --- building a shape from GROUP BY rows -----------------------------------------------


def six(segments_sent: int, segments_received: int, sent: int, received: int) -> Figures:
    """The six figures from the four sums a GROUP BY returns."""
    return (segments_sent + segments_received, segments_sent, segments_received,
            sent + received, sent, received)  # fmt: skip


def add(a: Figures, b: Figures) -> Figures:
    return tuple(x + y for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def spans(start: date, end: date, granularity: str) -> list[tuple[date, date]]:
    """Every bucket of [start, end], clipped to it: days, or calendar months."""
    out = []
    day = start
    while day <= end:
        if granularity == "DAY":
            last = day
        else:
            last = min(end, day.replace(day=monthrange(day.year, day.month)[1]))
        out.append((day, last))
        day = last + timedelta(days=1)
    return out


def series_of(
    buckets: list[tuple[date, date]], sums: dict[date, Figures], granularity: str
) -> tuple[Bucket, ...]:
    """The zero-filled series; ``sums`` is keyed by day (DAY) or by a month's first day."""
    result = []
    for first, last in buckets:
        key = first if granularity == "DAY" else first.replace(day=1)
        result.append((first.isoformat(), last.isoformat(), sums.get(key, ZERO)))
    return tuple(result)


def total_of(series: Iterable[Bucket]) -> Figures:
    total = ZERO
    for _, _, figures in series:
        total = add(total, figures)
    return total
