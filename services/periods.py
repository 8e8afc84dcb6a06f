"""Subscription periods ("subscription months") of an account.

Rules:

* Periods are anchored at the account's creation instant, a tz-aware datetime; all
  arithmetic happens in UTC and every returned datetime is UTC.
* Period ``n`` (``n >= 0``) starts at ``anchor + n`` calendar months. The day of month is
  clamped to the last day of the target month and the time of day is kept, so a Jan 31
  anchor gives Feb 28 (Feb 29 in leap years), Mar 31, Apr 30, ...
* Each start is computed from the ORIGINAL anchor, never chained from the previous
  start: chaining would turn Mar 31 into Mar 28 after a short February, for good.
* A period is the half-open interval ``[start, end)``; ``end`` is the next period's start,
  so an instant exactly on a boundary belongs to the later period.
* Naive datetimes are rejected with ``ValueError``: their meaning depends on the host's
  time zone.
"""

from __future__ import annotations

import functools

# Absolute import: the standard library module, not the sibling ``services.calendar``.
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Period", "period_at", "period_by_index", "period_start"]


@dataclass(frozen=True, slots=True)
class Period:
    """Subscription period ``index``: ``start`` inclusive, ``end`` exclusive, both UTC."""

    index: int
    start: datetime
    end: datetime


def period_start(anchor: datetime, index: int) -> datetime:
    """Start of period ``index``: ``anchor + index`` months, day clamped to the month's end."""
    _require_non_negative(index)
    return _add_months(_as_utc(anchor, "anchor"), index)


def period_by_index(anchor: datetime, index: int) -> Period:
    """Period number ``index`` (0 is the period that starts at ``anchor``)."""
    _require_non_negative(index)
    utc_anchor = _as_utc(anchor, "anchor")
    return _period(utc_anchor, index)


def period_at(anchor: datetime, instant: datetime) -> Period:
    """The period that contains ``instant``.

    An instant before ``anchor`` maps to period 0 instead of failing: the account's
    creation instant and the first usage events are stamped by different clocks, which
    skew by milliseconds, so an event can appear to precede the account that produced it.
    """
    utc_anchor = _as_utc(anchor, "anchor")
    utc_instant = _as_utc(instant, "instant")
    if utc_instant < utc_anchor:
        return _period(utc_anchor, 0)
    # Period n starts in the calendar month anchor.month + n, so the month difference is
    # either the index or one too many (when instant's day/time precedes the clamped start
    # in its month). One comparison fixes it: no loop over the periods since the anchor.
    index = _months_between(utc_anchor, utc_instant)
    if _add_months(utc_anchor, index) > utc_instant:
        index -= 1
    return _period(utc_anchor, index)


# Every balance read and change names its period: the same few (anchor, index) pairs.
@functools.lru_cache(maxsize=4096)
def _period(utc_anchor: datetime, index: int) -> Period:
    return Period(
        index=index,
        start=_add_months(utc_anchor, index),
        end=_add_months(utc_anchor, index + 1),
    )


def _add_months(utc_anchor: datetime, months: int) -> datetime:
    """``utc_anchor`` moved by ``months`` calendar months, day clamped, time of day kept."""
    year, month_zero_based = divmod(utc_anchor.year * 12 + utc_anchor.month - 1 + months, 12)
    month = month_zero_based + 1
    day = min(utc_anchor.day, monthrange(year, month)[1])
    return utc_anchor.replace(year=year, month=month, day=day)


def _months_between(earlier: datetime, later: datetime) -> int:
    return (later.year - earlier.year) * 12 + later.month - earlier.month


def _as_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _require_non_negative(index: int) -> None:
    if index < 0:
        raise ValueError(f"period index must be >= 0, got {index}")
