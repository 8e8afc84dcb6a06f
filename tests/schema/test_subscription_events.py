"""Subscription events and the fast path: each event compiles its selections for itself.

A subscription lives as long as its connection; anything its per-event executors share
must not grow with every event (schema/execution.py, `build_per_event_executor`).
"""

from __future__ import annotations

import pytest

from services.accounts import NewAccount
from tests.api.test_subscriptions import BALANCE_CHANGED, execute_events, executor_for


@pytest.mark.usefixtures("db")
async def test_each_event_compiles_its_plain_selections_for_itself(account: NewAccount) -> None:
    # given
    subscription = executor_for(BALANCE_CHANGED)
    # when
    for event, result in await execute_events(subscription, account):
        # then: the event took the fast path, and kept what it compiled to itself
        assert result.data is not None
        assert result.data["balanceChanged"]["balance"]["total"] == 5
        assert event._plans
    assert subscription._plans == {}
