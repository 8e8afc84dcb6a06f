"""Usage-report calendar: local days, their UTC bounds, and report buckets.

Rules:

* A message counts on the calendar day of its ``createdAt`` in the account's IANA time
  zone (``local_day``).
* A local day is the half-open UTC interval from its first instant to the next day's first
  instant (``utc_bounds``). DST makes days 23 or 25 hours long, and in some zones
  (America/Santiago, Asia/Beirut, historically America/Toronto) midnight does not exist on
  the spring-forward day: the day then begins at the transition, its first existing
  instant. Consecutive days therefore tile the time line without gaps or overlaps.
* Report granularities: ``DAY``; ``WEEK``, starting on the account's ``WeekStart``;
  ``MONTH``, calendar months; ``ALL``, a single bucket for the whole range.
* ``buckets`` covers the inclusive range ``[start, end]`` with every bucket present, in
  order, the first and last clipped to the range. A range with ``end < start`` or more
  than ``MAX_BUCKETS`` buckets is an ``InvalidRange``; the count is computed
  arithmetically, before anything is built.
"""

from __future__ import annotations

# Absolute import: the standard library module, not this one.
from calendar import monthrange
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Literal
from zoneinfo import ZoneInfo

from models.enums import WeekStart
from services.errors import InvalidValue

__all__ = [
    "MAX_BUCKETS",
    "Bucket",
    "Granularity",
    "InvalidRange",
    "WeekStart",
    "bucket_count",
    "bucket_index",
    "bucket_start",
    "buckets",
    "local_day",
    "utc_bounds",
]

# Ten years and change of daily buckets; a century of months fits comfortably.
MAX_BUCKETS = 3700

_ONE_DAY = timedelta(days=1)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


class Granularity(Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    ALL = "ALL"


# date.weekday() numbering: Monday is 0, Sunday is 6.
_FIRST_WEEKDAY = {WeekStart.MONDAY: 0, WeekStart.SUNDAY: 6}


@dataclass(frozen=True, slots=True)
class Bucket:
    """Days ``start`` through ``end``, both inclusive, already clipped to the report range."""

    start: date
    end: date


class InvalidRange(InvalidValue, ValueError):
    """A report range that is reversed or has too many buckets.

    ``field`` is ``"range.end"`` when the end precedes the start, ``"range"`` when the
    range as a whole is too long. Still a ``ValueError`` for callers outside the service
    layer; an ``InvalidValue`` so the edge reports it like any other bad input.
    """

    def __init__(self, message: str, *, field: Literal["range", "range.end"]) -> None:
        super().__init__(message, field=field)


def local_day(instant: datetime, zone: ZoneInfo) -> date:
    """The calendar day, in ``zone``, on which ``instant`` falls."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"instant must be a timezone-aware datetime, got naive {instant!r}")
    return instant.astimezone(zone).date()


def local_days(instants: Iterable[datetime], zone: ZoneInfo) -> Iterator[date]:
    """``local_day`` of each instant: for instants in order, one zone conversion a day
    rather than one an instant (a million messages' days, for seeding and rebuilds)."""
    day = date.min
    starts = ends = _EARLIEST  # an empty span: the first instant finds its own day
    for instant in instants:
        if not starts <= instant < ends:
            day = local_day(instant, zone)
            starts, ends = utc_bounds(day, day, zone)
        yield day


def utc_bounds(start: date, end: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC ``[first instant of start, first instant of the day after end)`` in ``zone``.

    Days at the ends of the calendar have no such instant (9999-12-31 has no next day;
    0001-01-01 in Tokyo began before UTC's year 1): the bound is then the earliest or
    latest instant there is, which the range means anyway.
    """
    _require_ordered(start, end)
    try:
        lower = _day_start(start, zone)
    except OverflowError:
        lower = _EARLIEST
    try:
        upper = _day_start(end + _ONE_DAY, zone)
    except OverflowError:
        upper = _LATEST
    return lower, upper


def bucket_start(day: date, granularity: Granularity, week_start: WeekStart) -> date:
    """Unclipped first day of the bucket containing ``day``.

    ``ALL`` has no bucket of its own per day (its one bucket is the report range), so it is
    rejected with ``ValueError``. The Sunday-started week of ``date.min`` begins before
    ``date.min`` and raises ``OverflowError``; ``buckets`` clips and never needs it.
    """
    match granularity:
        case Granularity.DAY:
            return day
        case Granularity.WEEK:
            return day - timedelta(days=_days_into_week(day.toordinal(), week_start))
        case Granularity.MONTH:
            return day.replace(day=1)
        case Granularity.ALL:
            raise ValueError("ALL has a single bucket, the report range: it has no per-day start")


def bucket_count(start: date, end: date, granularity: Granularity, week_start: WeekStart) -> int:
    """Number of buckets in ``[start, end]``; raises ``InvalidRange`` if invalid or too many."""
    _require_ordered(start, end)
    count = bucket_index(end, start, granularity, week_start) + 1
    if count > MAX_BUCKETS:
        raise InvalidRange(
            f"The range {start}..{end} spans {count} {granularity.value} buckets; "
            f"at most {MAX_BUCKETS} are allowed. Use a shorter range or a coarser granularity.",
            field="range",
        )
    return count


def buckets(
    start: date, end: date, granularity: Granularity, week_start: WeekStart
) -> list[Bucket]:
    """Every bucket of ``[start, end]`` in order, the first and last clipped to the range."""
    # Validate (order and size) before building anything: a huge range must fail cheaply.
    bucket_count(start, end, granularity, week_start)
    result = [Bucket(start, _clipped_last_day(start, end, granularity, week_start))]
    while result[-1].end < end:
        first = result[-1].end + _ONE_DAY
        result.append(Bucket(first, _clipped_last_day(first, end, granularity, week_start)))
    return result


def bucket_index(day: date, start: date, granularity: Granularity, week_start: WeekStart) -> int:
    """Position of ``day``'s bucket in ``buckets(start, ...)``, in constant time."""
    if day < start:
        raise ValueError(f"day {day} is before the range start {start}")
    return _serial(day, granularity, week_start) - _serial(start, granularity, week_start)


def _serial(day: date, granularity: Granularity, week_start: WeekStart) -> int:
    """Absolute number of the bucket containing ``day``; consecutive buckets differ by 1.

    Works on ordinals rather than dates so that weeks straddling date.min or date.max,
    which have no representable first or last day, still get a number.
    """
    match granularity:
        case Granularity.DAY:
            return day.toordinal()
        case Granularity.WEEK:
            ordinal = day.toordinal()
            return (ordinal - _days_into_week(ordinal, week_start)) // 7
        case Granularity.MONTH:
            return day.year * 12 + day.month - 1
        case Granularity.ALL:
            return 0


def _clipped_last_day(
    day: date, end: date, granularity: Granularity, week_start: WeekStart
) -> date:
    """Last day of the bucket containing ``day``, clipped to ``end``."""
    ordinal = day.toordinal()
    match granularity:
        case Granularity.DAY:
            last = ordinal
        case Granularity.WEEK:
            last = ordinal + 6 - _days_into_week(ordinal, week_start)
        case Granularity.MONTH:
            last = ordinal + monthrange(day.year, day.month)[1] - day.day
        case Granularity.ALL:
            last = end.toordinal()
    # Clip on ordinals: the unclipped last day may lie beyond date.max.
    return date.fromordinal(min(last, end.toordinal()))


def _days_into_week(ordinal: int, week_start: WeekStart) -> int:
    """Days since the week's first day; ordinal 1 (0001-01-01) is a Monday."""
    return (ordinal - 1 - _FIRST_WEEKDAY[week_start]) % 7


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    """First instant (UTC) whose local date in ``zone`` is ``day`` or later."""
    midnight = datetime.combine(day, time())
    # PEP 495: for an ambiguous wall time fold=0 is the earlier instant; for a wall time in
    # a gap fold=0 applies the offset from before the transition and fold=1 the one after.
    # So the fold=1 instant comes first only when midnight falls in a gap.
    with_earlier = midnight.replace(tzinfo=zone).astimezone(UTC)
    with_later = midnight.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if with_later >= with_earlier:
        return with_earlier
    return _gap_end(midnight, zone, before=with_later, after=with_earlier)


def _gap_end(midnight: datetime, zone: ZoneInfo, *, before: datetime, after: datetime) -> datetime:
    """The transition instant that skips over local ``midnight``.

    It lies in ``(before, after]``: ``before`` still shows the previous day, ``after`` shows
    ``midnight`` or later. ``after`` is the transition itself only when the gap starts exactly
    at midnight; a gap such as 23:30 -> 00:30 needs the search. Bisection over whole seconds
    is exact because TZif transitions are whole seconds, and the gap is at most about a day.
    """
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        local = (before + timedelta(seconds=middle)).astimezone(zone).replace(tzinfo=None)
        if local >= midnight:
            high = middle
        else:
            low = middle
    return before + timedelta(seconds=high)


def _require_ordered(start: date, end: date) -> None:
    if end < start:
        raise InvalidRange(f"The range end {end} is before its start {start}.", field="range.end")
