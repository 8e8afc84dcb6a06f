"""The pure rules of spend control: alert crossings, budget thresholds, signatures, addresses."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.enums import AlertState, NoticeKind
from services.alerts import crossings, levels, recovery_level
from services.balance import Balance
from services.broadcast import BalanceEvent, event_from_json, event_to_json
from services.budgets import crossed
from services.notices import RaisedNotice
from services.signatures import new_secret, sign
from services.url_guard import is_public

ARMED, FIRED = AlertState.ARMED, AlertState.FIRED
NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("threshold", "level"), [(0, 1), (5, 6), (10, 11), (11, 13), (100, 110), (1000, 1100)]
)
def test_recovery_needs_a_tenth_more_and_at_least_one(threshold: int, level: int) -> None:
    assert recovery_level(threshold) == level


def test_falling_fires_armed_thresholds_above_the_total_highest_first() -> None:
    states = [(100, ARMED), (500, ARMED), (300, ARMED), (900, FIRED)]
    assert crossings(states, 299) == ([500, 300], [])


def test_a_total_equal_to_a_threshold_fires_nothing() -> None:
    assert crossings([(300, ARMED)], 300) == ([], [])


def test_rising_rearms_fired_thresholds_at_their_recovery_level_lowest_first() -> None:
    states = [(100, FIRED), (50, FIRED), (200, FIRED)]
    assert crossings(states, 219) == ([], [50, 100])
    assert crossings(states, 220) == ([], [50, 100, 200])


def test_levels_sum_up_what_a_change_must_cross() -> None:
    assert levels([(100, ARMED), (500, ARMED), (300, FIRED), (50, FIRED)]) == (500, 55)
    assert levels([]) == (None, None)


@given(
    st.dictionaries(st.integers(0, 2000), st.sampled_from([ARMED, FIRED]), max_size=5),
    st.integers(-100, 3000),
)
def test_levels_tell_exactly_when_a_change_crosses_something(
    states: dict[int, AlertState], total: int
) -> None:
    fire_below, recover_at = levels(states.items())
    may_cross = (fire_below is not None and total < fire_below) or (
        recover_at is not None and total >= recover_at
    )
    assert may_cross == (crossings(states.items(), total) != ([], []))


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [(0, 7, (False, False)), (7, 8, (True, False)), (8, 10, (False, True)),
     (0, 10, (True, True)), (10, 12, (False, False)), (9, 7, (False, False))],
)  # fmt: skip
def test_a_budget_of_ten_warns_at_eight_and_is_reached_at_ten(
    before: int, after: int, expected: tuple[bool, bool]
) -> None:
    assert crossed(10, before, after) == expected


def test_eighty_percent_of_an_odd_budget_is_exact() -> None:
    assert crossed(7, 5, 6) == (True, False)  # 5.6 is 80% of 7
    assert crossed(7, 4, 5) == (False, False)


def test_a_signature_is_the_hmac_of_timestamp_dot_body() -> None:
    secret = new_secret()
    header = sign(secret, timestamp=1700000000, body='{"a":1}')
    digest = hmac.new(secret.encode(), b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={digest}"
    assert secret.startswith("whsec_")
    assert new_secret() != secret


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.31.255.255", "192.168.0.1", "169.254.1.1", "224.0.0.251",
     "0.0.0.0", "100.64.0.1", "240.0.0.1", "::1", "::", "fe80::1", "fd00::1", "ff02::1",
     "::ffff:127.0.0.1", "::ffff:192.168.1.1"],
)  # fmt: skip
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


def test_a_balance_event_keeps_its_notices_through_redis() -> None:
    notice = RaisedNotice(
        id=7, account_id=1, kind=NoticeKind.BUDGET_REACHED, value=10, threshold_credits=None,
        inbox_id=3, event_id="evt_x", created_at=NOW,
    )  # fmt: skip
    balance = Balance(1, 5, 0, NOW, NOW, 4)
    event = event_from_json(event_to_json(BalanceEvent(balance, (), (notice,))))
    assert event.notices == (notice,)
    assert event.balance == balance
