from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.periods import Period, period_at, period_by_index, period_start

JAN_31 = datetime(2027, 1, 31, 15, 45, 30, 123456, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def at(year: int, month: int, day: int) -> datetime:
    """``day`` at JAN_31's time of day, in UTC."""
    return datetime(year, month, day, 15, 45, 30, 123456, tzinfo=UTC)


def test_period_zero_starts_at_the_anchor() -> None:
    assert period_by_index(JAN_31, 0) == Period(index=0, start=JAN_31, end=at(2027, 2, 28))


def test_jan_31_anchor_clamps_to_feb_28_in_non_leap_year() -> None:
    assert period_start(JAN_31, 1) == at(2027, 2, 28)


def test_jan_31_anchor_clamps_to_feb_29_in_leap_year() -> None:
    # Given an anchor on Jan 31 2027, period 13 falls in February 2028, a leap year.
    assert period_start(JAN_31, 13) == at(2028, 2, 29)


def test_jan_31_anchor_returns_to_mar_31_after_february() -> None:
    # Starts come from the original anchor, not from the clamped February start.
    assert period_start(JAN_31, 2) == at(2027, 3, 31)
    assert period_start(JAN_31, 14) == at(2028, 3, 31)


def test_jan_31_anchor_clamps_to_30_day_months() -> None:
    assert [period_start(JAN_31, n) for n in range(3, 6)] == [
        at(2027, 4, 30),
        at(2027, 5, 31),
        at(2027, 6, 30),
    ]


def test_jan_31_anchor_through_a_leap_year() -> None:
    starts = [period_start(JAN_31, n).date().isoformat() for n in range(11, 16)]
    assert starts == ["2027-12-31", "2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30"]


def test_time_of_day_is_kept() -> None:
    start = period_start(JAN_31, 1)
    assert (start.hour, start.minute, start.second, start.microsecond) == (15, 45, 30, 123456)


@pytest.mark.parametrize(
    ("anchor_day", "expected_feb_day", "expected_mar_day"),
    [(29, 28, 29), (30, 28, 30)],
)
def test_anchor_on_29th_or_30th_clamps_in_february_only(
    anchor_day: int, expected_feb_day: int, expected_mar_day: int
) -> None:
    anchor = datetime(2027, 1, anchor_day, 8, 0, tzinfo=UTC)
    assert period_start(anchor, 1) == datetime(2027, 2, expected_feb_day, 8, 0, tzinfo=UTC)
    assert period_start(anchor, 2) == datetime(2027, 3, expected_mar_day, 8, 0, tzinfo=UTC)


def test_anchor_on_29th_keeps_feb_29_in_leap_year() -> None:
    anchor = datetime(2028, 1, 29, 8, 0, tzinfo=UTC)
    assert period_start(anchor, 1) == datetime(2028, 2, 29, 8, 0, tzinfo=UTC)


def test_instant_exactly_at_boundary_belongs_to_new_period() -> None:
    boundary = at(2027, 2, 28)
    assert period_at(JAN_31, boundary) == Period(index=1, start=boundary, end=at(2027, 3, 31))


def test_instant_one_microsecond_before_boundary_belongs_to_old_period() -> None:
    assert period_at(JAN_31, at(2027, 2, 28) - MICROSECOND).index == 0


def test_instant_later_in_the_month_than_the_clamped_start_is_in_that_period() -> None:
    # Given the Feb 28 start, Feb 28 at 23:00 is already period 1 although the day (28) is
    # before the anchor's day (31).
    assert period_at(JAN_31, datetime(2027, 2, 28, 23, 0, tzinfo=UTC)).index == 1


def test_instant_earlier_in_the_month_than_the_start_is_in_the_previous_period() -> None:
    assert period_at(JAN_31, datetime(2027, 3, 30, tzinfo=UTC)).index == 1


def test_instant_five_years_later() -> None:
    instant = datetime(2032, 6, 15, tzinfo=UTC)
    assert period_at(JAN_31, instant) == Period(
        index=64, start=at(2032, 5, 31), end=at(2032, 6, 30)
    )


def test_instant_before_anchor_is_period_zero() -> None:
    # Given a usage event whose clock ran a few milliseconds behind the account creator's.
    skewed = JAN_31 - timedelta(milliseconds=3)
    assert period_at(JAN_31, skewed) == period_by_index(JAN_31, 0)


def test_aware_non_utc_inputs_are_computed_and_returned_in_utc() -> None:
    # Given an anchor at 2027-01-31 20:00 in UTC-5, i.e. 2027-02-01 01:00 UTC.
    anchor = datetime(2027, 1, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert period_start(anchor, 1) == datetime(2027, 3, 1, 1, 0, tzinfo=UTC)
    assert period_start(anchor, 1).tzinfo is UTC


@pytest.mark.parametrize(
    ("anchor", "instant"),
    [
        (datetime(2027, 1, 31), JAN_31),  # noqa: DTZ001 - naive on purpose
        (JAN_31, datetime(2027, 2, 1)),  # noqa: DTZ001 - naive on purpose
    ],
)
def test_naive_datetimes_are_rejected(anchor: datetime, instant: datetime) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_at(anchor, instant)


def test_naive_anchor_is_rejected_by_index_lookups() -> None:
    naive = datetime(2027, 1, 31)  # noqa: DTZ001 - naive on purpose
    with pytest.raises(ValueError, match="timezone-aware"):
        period_start(naive, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        period_by_index(naive, 1)


def test_negative_index_is_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        period_by_index(JAN_31, -1)


# Anchors from 1970 to 2100, built from aware UTC instants (hypothesis' own bounds are naive).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
anchors = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=365 * 130)).map(
    lambda since_epoch: EPOCH + since_epoch
)
offsets = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=366 * 60))


@given(anchor=anchors, offset=offsets)
def test_period_at_contains_the_instant_and_ends_where_the_next_starts(
    anchor: datetime, offset: timedelta
) -> None:
    instant = anchor + offset
    period = period_at(anchor, instant)
    assert period.start <= instant < period.end
    assert period_by_index(anchor, period.index) == period
    assert period_by_index(anchor, period.index + 1).start == period.end


@given(anchor=anchors, index=st.integers(min_value=0, max_value=12 * 60))
def test_period_starts_strictly_increase(anchor: datetime, index: int) -> None:
    assert period_start(anchor, index) < period_start(anchor, index + 1)
    assert period_start(anchor, 0) == anchor


@given(anchor=anchors, index=st.integers(min_value=1, max_value=12 * 60))
def test_each_boundary_opens_the_new_period_and_the_microsecond_before_is_the_old(
    anchor: datetime, index: int
) -> None:
    boundary = period_start(anchor, index)
    assert period_at(anchor, boundary).index == index
    assert period_at(anchor, boundary - MICROSECOND).index == index - 1
