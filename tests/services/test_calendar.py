from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.calendar import (
    MAX_BUCKETS,
    Bucket,
    Granularity,
    InvalidRange,
    WeekStart,
    bucket_count,
    bucket_index,
    bucket_start,
    buckets,
    local_day,
    local_days,
    utc_bounds,
)
from services.errors import InvalidValue

NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
KOLKATA = ZoneInfo("Asia/Kolkata")
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")
SANTIAGO = ZoneInfo("America/Santiago")
BEIRUT = ZoneInfo("Asia/Beirut")

ONE_DAY = timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def day_length(day: date, zone: ZoneInfo) -> timedelta:
    start, end = utc_bounds(day, day, zone)
    return end - start


# --- buckets ------------------------------------------------------------------------------

# 2026-01-07 is a Wednesday; 2026-01-20 is the Tuesday of the week after next.
WEDNESDAY = date(2026, 1, 7)
TUESDAY_AFTER_NEXT = date(2026, 1, 20)


def test_day_buckets_are_one_per_day() -> None:
    assert buckets(date(2026, 1, 1), date(2026, 1, 3), Granularity.DAY, WeekStart.MONDAY) == [
        Bucket(date(2026, 1, 1), date(2026, 1, 1)),
        Bucket(date(2026, 1, 2), date(2026, 1, 2)),
        Bucket(date(2026, 1, 3), date(2026, 1, 3)),
    ]


def test_monday_weeks_are_clipped_at_both_ends_of_the_range() -> None:
    assert buckets(WEDNESDAY, TUESDAY_AFTER_NEXT, Granularity.WEEK, WeekStart.MONDAY) == [
        Bucket(date(2026, 1, 7), date(2026, 1, 11)),
        Bucket(date(2026, 1, 12), date(2026, 1, 18)),
        Bucket(date(2026, 1, 19), date(2026, 1, 20)),
    ]


def test_sunday_weeks_are_clipped_at_both_ends_of_the_range() -> None:
    assert buckets(WEDNESDAY, TUESDAY_AFTER_NEXT, Granularity.WEEK, WeekStart.SUNDAY) == [
        Bucket(date(2026, 1, 7), date(2026, 1, 10)),
        Bucket(date(2026, 1, 11), date(2026, 1, 17)),
        Bucket(date(2026, 1, 18), date(2026, 1, 20)),
    ]


def test_month_buckets_cross_a_year_boundary_and_are_clipped_at_both_ends() -> None:
    assert buckets(date(2025, 11, 15), date(2026, 2, 10), Granularity.MONTH, WeekStart.MONDAY) == [
        Bucket(date(2025, 11, 15), date(2025, 11, 30)),
        Bucket(date(2025, 12, 1), date(2025, 12, 31)),
        Bucket(date(2026, 1, 1), date(2026, 1, 31)),
        Bucket(date(2026, 2, 1), date(2026, 2, 10)),
    ]


def test_all_is_one_bucket_equal_to_the_range() -> None:
    start, end = date(2020, 2, 29), date(2026, 7, 4)
    assert buckets(start, end, Granularity.ALL, WeekStart.SUNDAY) == [Bucket(start, end)]


@pytest.mark.parametrize("granularity", list(Granularity))
def test_single_day_range_is_one_single_day_bucket(granularity: Granularity) -> None:
    day = date(2026, 5, 17)
    assert buckets(day, day, granularity, WeekStart.MONDAY) == [Bucket(day, day)]


def test_end_before_start_is_an_invalid_range_end() -> None:
    with pytest.raises(InvalidRange, match="before its start") as raised:
        buckets(date(2026, 1, 2), date(2026, 1, 1), Granularity.DAY, WeekStart.MONDAY)
    assert raised.value.field == "range.end"


def test_invalid_range_is_a_value_error_and_a_domain_invalid_value() -> None:
    with pytest.raises(InvalidRange) as raised:
        bucket_count(date(2026, 1, 2), date(2026, 1, 1), Granularity.MONTH, WeekStart.MONDAY)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, InvalidValue)


def test_max_buckets_of_days_is_allowed() -> None:
    start = date(2020, 1, 1)
    end = start + timedelta(days=MAX_BUCKETS - 1)
    result = buckets(start, end, Granularity.DAY, WeekStart.MONDAY)
    assert len(result) == MAX_BUCKETS == 3700
    assert (result[0].start, result[-1].end) == (start, end)


def test_one_bucket_over_max_is_an_invalid_range() -> None:
    start = date(2020, 1, 1)
    end = start + timedelta(days=MAX_BUCKETS)
    with pytest.raises(InvalidRange, match="3701 DAY buckets") as raised:
        buckets(start, end, Granularity.DAY, WeekStart.MONDAY)
    assert raised.value.field == "range"


def test_a_century_of_months_is_1200_buckets() -> None:
    result = buckets(date(2000, 1, 1), date(2099, 12, 31), Granularity.MONTH, WeekStart.MONDAY)
    assert len(result) == 1200


def test_an_enormous_range_is_rejected_without_being_built() -> None:
    # Given ~3.6 million days: the count is arithmetic, so this fails at once.
    with pytest.raises(InvalidRange, match="3652059 DAY buckets"):
        buckets(date.min, date.max, Granularity.DAY, WeekStart.MONDAY)


def test_all_granularity_accepts_any_range_length() -> None:
    assert bucket_count(date.min, date.max, Granularity.ALL, WeekStart.MONDAY) == 1


@pytest.mark.parametrize("week_start", list(WeekStart))
def test_weeks_at_the_edges_of_the_calendar_do_not_overflow(week_start: WeekStart) -> None:
    # date.min is a Monday and date.max a Friday: the Sunday-started week before date.min
    # and the week after date.max have first/last days that cannot be represented.
    first = buckets(date.min, date.min + timedelta(days=8), Granularity.WEEK, week_start)
    last = buckets(date.max - timedelta(days=8), date.max, Granularity.WEEK, week_start)
    assert (first[0].start, last[-1].end) == (date.min, date.max)


@pytest.mark.parametrize(
    ("granularity", "week_start", "expected"),
    [
        (Granularity.DAY, WeekStart.MONDAY, date(2026, 1, 7)),
        (Granularity.WEEK, WeekStart.MONDAY, date(2026, 1, 5)),
        (Granularity.WEEK, WeekStart.SUNDAY, date(2026, 1, 4)),
        (Granularity.MONTH, WeekStart.SUNDAY, date(2026, 1, 1)),
    ],
)
def test_bucket_start_is_the_unclipped_first_day(
    granularity: Granularity, week_start: WeekStart, expected: date
) -> None:
    assert bucket_start(WEDNESDAY, granularity, week_start) == expected


def test_bucket_start_of_a_sunday_in_sunday_weeks_is_that_sunday() -> None:
    sunday = date(2026, 1, 11)
    assert bucket_start(sunday, Granularity.WEEK, WeekStart.SUNDAY) == sunday
    assert bucket_start(sunday, Granularity.WEEK, WeekStart.MONDAY) == date(2026, 1, 5)


def test_bucket_start_rejects_all() -> None:
    with pytest.raises(ValueError, match="ALL"):
        bucket_start(WEDNESDAY, Granularity.ALL, WeekStart.MONDAY)


def test_bucket_index_rejects_a_day_before_the_range() -> None:
    with pytest.raises(ValueError, match="before the range start"):
        bucket_index(date(2026, 1, 6), WEDNESDAY, Granularity.DAY, WeekStart.MONDAY)


ranges = st.tuples(
    st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)),
    st.integers(min_value=0, max_value=800),
).map(lambda start_and_days: (start_and_days[0], start_and_days[0] + timedelta(start_and_days[1])))


@given(
    start_end=ranges,
    granularity=st.sampled_from(Granularity),
    week_start=st.sampled_from(WeekStart),
    data=st.data(),
)
def test_bucket_index_agrees_with_a_linear_search_over_buckets(
    start_end: tuple[date, date],
    granularity: Granularity,
    week_start: WeekStart,
    data: st.DataObject,
) -> None:
    # Given a range, its buckets and a day inside it.
    start, end = start_end
    series = buckets(start, end, granularity, week_start)
    day = data.draw(st.dates(min_value=start, max_value=end))
    # When the day's bucket is found by scanning.
    expected = next(i for i, bucket in enumerate(series) if bucket.start <= day <= bucket.end)
    # Then the O(1) index is the same.
    assert bucket_index(day, start, granularity, week_start) == expected


@given(
    start_end=ranges,
    granularity=st.sampled_from(Granularity),
    week_start=st.sampled_from(WeekStart),
)
def test_buckets_tile_the_range_in_order_and_match_the_count(
    start_end: tuple[date, date], granularity: Granularity, week_start: WeekStart
) -> None:
    start, end = start_end
    series = buckets(start, end, granularity, week_start)
    assert len(series) == bucket_count(start, end, granularity, week_start)
    assert (series[0].start, series[-1].end) == (start, end)
    for previous, following in pairwise(series):
        assert following.start == previous.end + ONE_DAY
    if granularity is not Granularity.ALL:
        for bucket in series:
            first = bucket_start(bucket.start, granularity, week_start)
            assert bucket_start(bucket.end, granularity, week_start) == first
            assert bucket.start == max(first, start)


# --- local_day ----------------------------------------------------------------------------


def test_late_evening_on_us_spring_forward_day_counts_on_that_local_day() -> None:
    # Given 23:30 EDT on 2026-03-08, the day clocks sprang forward (03:30Z the next day).
    assert local_day(utc(2026, 3, 9, 3, 30), NEW_YORK) == date(2026, 3, 8)


def test_late_evening_on_us_fall_back_day_counts_on_that_local_day() -> None:
    # Given 23:30 EST on 2026-11-01, the day clocks fell back (04:30Z the next day).
    assert local_day(utc(2026, 11, 2, 4, 30), NEW_YORK) == date(2026, 11, 1)


def test_kolkata_half_hour_offset_changes_day_at_1830_utc() -> None:
    assert local_day(utc(2026, 1, 1, 18, 29), KOLKATA) == date(2026, 1, 1)
    assert local_day(utc(2026, 1, 1, 18, 30), KOLKATA) == date(2026, 1, 2)


def test_kiritimati_plus_14_is_already_tomorrow_at_1000_utc() -> None:
    assert local_day(utc(2026, 1, 1, 10, 0), KIRITIMATI) == date(2026, 1, 2)
    assert local_day(utc(2026, 1, 1, 10, 0) - MICROSECOND, KIRITIMATI) == date(2026, 1, 1)


def test_london_october_fall_back_repeats_an_hour_within_the_same_day() -> None:
    # Given 2026-10-25, when 01:00-02:00 happens twice (BST, then GMT).
    assert local_day(utc(2026, 10, 24, 22, 59), LONDON) == date(2026, 10, 24)  # 23:59 BST
    assert local_day(utc(2026, 10, 24, 23, 0), LONDON) == date(2026, 10, 25)  # 00:00 BST
    assert local_day(utc(2026, 10, 25, 0, 30), LONDON) == date(2026, 10, 25)  # 01:30 BST
    assert local_day(utc(2026, 10, 25, 1, 30), LONDON) == date(2026, 10, 25)  # 01:30 GMT
    assert local_day(utc(2026, 10, 25, 23, 59), LONDON) == date(2026, 10, 25)  # 23:59 GMT
    assert local_day(utc(2026, 10, 26, 0, 0), LONDON) == date(2026, 10, 26)


@given(
    zone=st.sampled_from([NEW_YORK, LONDON, KOLKATA, KIRITIMATI]),
    minutes=st.lists(st.integers(0, 3 * 366 * 24 * 60), max_size=60),
    in_order=st.booleans(),
)
def test_local_days_of_many_instants_are_each_instant_s_local_day(
    zone: ZoneInfo, minutes: list[int], in_order: bool
) -> None:
    # given instants over three years (DST changes included), in order or not
    instants = [utc(2025, 1, 1, 0, 0) + timedelta(minutes=m) for m in minutes]
    if in_order:
        instants.sort()
    # then each has the day local_day gives it
    assert list(local_days(instants, zone)) == [local_day(i, zone) for i in instants]


def test_local_days_changes_day_at_each_local_midnight() -> None:
    before_midnight = utc(2026, 3, 9, 3, 59)  # 23:59 EDT on the spring-forward day
    after_midnight = utc(2026, 3, 9, 4, 0)
    days = local_days([before_midnight, after_midnight], NEW_YORK)
    assert list(days) == [date(2026, 3, 8), date(2026, 3, 9)]


def test_local_day_rejects_naive_instants() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        local_day(datetime(2026, 1, 1, 12, 0), NEW_YORK)  # noqa: DTZ001 - naive on purpose


# --- utc_bounds ---------------------------------------------------------------------------


def test_ordinary_day_bounds_are_local_midnights() -> None:
    assert utc_bounds(date(2026, 1, 15), date(2026, 1, 15), NEW_YORK) == (
        utc(2026, 1, 15, 5, 0),
        utc(2026, 1, 16, 5, 0),
    )


def test_a_range_to_the_last_day_of_the_calendar_ends_at_the_latest_instant() -> None:
    start, end = utc_bounds(date(9999, 12, 31), date(9999, 12, 31), NEW_YORK)
    assert (start, end) == (utc(9999, 12, 31, 5, 0), datetime.max.replace(tzinfo=UTC))


def test_a_range_from_the_first_day_east_of_utc_starts_at_the_earliest_instant() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    start, end = utc_bounds(date(1, 1, 1), date(1, 1, 31), tokyo)
    next_midnight = datetime(1, 2, 1, tzinfo=tokyo).astimezone(UTC)
    assert (start, end) == (datetime.min.replace(tzinfo=UTC), next_midnight)


def test_us_spring_forward_day_is_23_hours_long() -> None:
    assert day_length(date(2026, 3, 8), NEW_YORK) == timedelta(hours=23)


def test_us_fall_back_day_is_25_hours_long() -> None:
    assert day_length(date(2026, 11, 1), NEW_YORK) == timedelta(hours=25)


def test_multi_day_bounds_run_from_first_start_to_last_end() -> None:
    # Given a week spanning the spring-forward night: 7 days minus the skipped hour.
    start, end = utc_bounds(date(2026, 3, 5), date(2026, 3, 11), NEW_YORK)
    assert (start, end - start) == (utc(2026, 3, 5, 5, 0), timedelta(days=7, hours=-1))


def test_santiago_day_without_midnight_starts_at_the_transition() -> None:
    # Given 2026-09-06 in Chile: clocks jump from 00:00 (-04) to 01:00 (-03) at 04:00Z.
    start, end = utc_bounds(date(2026, 9, 6), date(2026, 9, 6), SANTIAGO)
    assert (start, end - start) == (utc(2026, 9, 6, 4, 0), timedelta(hours=23))
    assert start.astimezone(SANTIAGO).hour == 1
    assert local_day(start - MICROSECOND, SANTIAGO) == date(2026, 9, 5)


def test_beirut_day_without_midnight_starts_at_the_transition() -> None:
    # Given 2026-03-29 in Lebanon: clocks jump from 00:00 (+02) to 01:00 (+03) at 22:00Z.
    start, _ = utc_bounds(date(2026, 3, 29), date(2026, 3, 29), BEIRUT)
    assert start == utc(2026, 3, 28, 22, 0)
    assert start.astimezone(BEIRUT).hour == 1
    assert local_day(start - MICROSECOND, BEIRUT) == date(2026, 3, 28)


def test_day_whose_gap_straddles_midnight_starts_at_the_transition_not_at_0100() -> None:
    # Given Toronto on 1919-03-30: clocks jumped from 23:30 EST to 00:30 EDT at 04:30Z, so
    # 1919-03-31 began at 00:30 local; applying either offset to midnight misses it.
    start, _ = utc_bounds(date(1919, 3, 31), date(1919, 3, 31), ZoneInfo("America/Toronto"))
    assert start == utc(1919, 3, 31, 4, 30)


def test_a_skipped_local_day_has_empty_bounds() -> None:
    # Given Samoa, which went from 2011-12-29 23:59:59 (-10) straight to 2011-12-31 (+14).
    start, end = utc_bounds(date(2011, 12, 30), date(2011, 12, 30), ZoneInfo("Pacific/Apia"))
    assert start == end == utc(2011, 12, 30, 10, 0)


def test_utc_bounds_rejects_end_before_start() -> None:
    with pytest.raises(InvalidRange) as raised:
        utc_bounds(date(2026, 1, 2), date(2026, 1, 1), NEW_YORK)
    assert raised.value.field == "range.end"


ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",
    "Pacific/Kiritimati",
    "America/Santiago",
    "Asia/Beirut",
    "Australia/Lord_Howe",  # DST shifts by 30 minutes
]


@given(
    day=st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)),
    zone_name=st.sampled_from([*ZONES, "Pacific/Apia", "America/Toronto"]),
)
def test_consecutive_days_tile_without_gaps_or_overlaps(day: date, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    # Given a day and the next one.
    start, end = utc_bounds(day, day, zone)
    next_start, next_end = utc_bounds(day + ONE_DAY, day + ONE_DAY, zone)
    # Then one ends exactly where the next begins, and a two-day range spans both.
    assert start <= end == next_start
    assert utc_bounds(day, day + ONE_DAY, zone) == (start, next_end)
    assert start.tzinfo is UTC


# From 1995-01-02: Kiritimati skipped 1994-12-31 entirely (its bounds are, correctly, empty),
# so the instant before 1995-01-01 began was still on 1994-12-30.
@given(
    day=st.dates(min_value=date(1995, 1, 2), max_value=date(2100, 12, 31)),
    zone_name=st.sampled_from(ZONES),
)
def test_day_bounds_cover_exactly_that_local_day(day: date, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    start, end = utc_bounds(day, day, zone)
    assert local_day(start - MICROSECOND, zone) == day - ONE_DAY
    assert local_day(start, zone) == day
    assert local_day(end - MICROSECOND, zone) == day
    assert timedelta(hours=23) <= end - start <= timedelta(hours=25)
