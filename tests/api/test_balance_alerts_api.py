"""Balance alerts through the API (RULES.md, "Balance alerts" and "Notices")."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models import Account, BalanceAlert, Inbox, Message, Notice
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.messaging import record_delivery_status
from services.runtime import Runtime
from tests.api.spend import (
    ALERTS,
    NOTICES,
    SET_ALERTS,
    SET_PAYMENT_METHOD,
    buy,
    data,
    notices,
    sent,
    total,
)
from tests.api.test_accounts_api import member_token
from tests.conftest import Api


async def set_alerts(api: Api, token: str, *thresholds: int) -> dict:
    answer = await data(api, token, SET_ALERTS, thresholds=list(thresholds))
    payload: dict = answer["setBalanceAlerts"]
    return payload


async def test_new_thresholds_start_armed_at_or_below_the_total_and_fired_above_it(
    api: Api, account: NewAccount
) -> None:
    # given a total of 1,000
    token = account.token.secret
    assert await total(api, token) == 1000
    # when
    payload = await set_alerts(api, token, 1200, 500, 1000)
    # then lowest first, and no notice for the FIRED one
    assert payload["userErrors"] == []
    shown = [(a["thresholdCredits"], a["state"], a["lastFiredAt"]) for a in payload["alerts"]]
    assert shown == [(500, "ARMED", None), (1000, "ARMED", None), (1200, "FIRED", None)]
    listed = (await data(api, token, ALERTS))["account"]["balanceAlerts"]
    assert [(a["thresholdCredits"], a["state"]) for a in listed] == [
        (500, "ARMED"), (1000, "ARMED"), (1200, "FIRED"),
    ]  # fmt: skip
    assert await notices(api, token) == []


@pytest.mark.parametrize(
    "thresholds",
    [[1, 2, 3, 4, 5, 6], [10, 10], [-1], [1_000_001]],
    ids=["six", "repeated", "negative", "too large"],
)
async def test_bad_thresholds_are_invalid_value_and_change_nothing(
    api: Api, account: NewAccount, thresholds: list[int]
) -> None:
    token = account.token.secret
    await set_alerts(api, token, 100)
    payload = await set_alerts(api, token, *thresholds)
    assert payload["alerts"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID_VALUE", ["input", "thresholds"])
    ]
    kept = await BalanceAlert.filter(account_id=account.account.id)
    assert [alert.threshold_credits for alert in kept] == [100]


async def test_zero_and_a_million_are_valid_thresholds(api: Api, account: NewAccount) -> None:
    payload = await set_alerts(api, account.token.secret, 0, 1_000_000)
    assert [a["state"] for a in payload["alerts"]] == ["ARMED", "FIRED"]


async def test_a_member_may_not_set_or_read_alerts(api: Api, account: NewAccount) -> None:
    token = await member_token(api, account)
    body = await api(SET_ALERTS, {"thresholds": [10]}, token=token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    for query in (ALERTS, NOTICES):
        body = await api(query, token=token)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert not await BalanceAlert.exists(account_id=account.account.id)


async def test_a_send_that_crosses_a_threshold_fires_it_once(
    api: Api, account: NewAccount, inbox: Inbox, clock: FrozenClock
) -> None:
    # given
    token = account.token.secret
    await set_alerts(api, token, 1000)
    # when the total goes 1,000 -> 999 -> 998
    await sent(api, token, inbox.id)
    await sent(api, token, inbox.id)
    # then one notice, with the total right after the change
    shown = await notices(api, token)
    assert [(n["kind"], n["thresholdCredits"], n["value"], n["inbox"]) for n in shown] == [
        ("BALANCE_BELOW_THRESHOLD", 1000, 999, None)
    ]
    alert = (await data(api, token, ALERTS))["account"]["balanceAlerts"][0]
    assert alert["state"] == "FIRED"
    assert alert["lastFiredAt"] == clock.now().isoformat()


async def test_one_change_crossing_several_thresholds_raises_one_notice_each_highest_first(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    token = account.token.secret
    await set_alerts(api, token, 997, 999, 998, 100)
    # when a 3-credit send takes 1,000 to 997
    await sent(api, token, inbox.id, segments=3)
    # then 999 and 998 fire (997 is not crossed), raised highest first, listed newest first
    rows = await Notice.filter(account_id=account.account.id).order_by("id")
    assert [(n.kind.value, n.threshold_credits) for n in rows] == [
        ("BALANCE_BELOW_THRESHOLD", 999),
        ("BALANCE_BELOW_THRESHOLD", 998),
    ]
    assert [n["thresholdCredits"] for n in await notices(api, token)] == [998, 999]


async def test_recovery_needs_a_tenth_more_and_hovering_raises_nothing(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    # given 1,000 fired at 999 (recovers at 1,100)
    token = account.token.secret
    await data(api, token, SET_PAYMENT_METHOD)
    await set_alerts(api, token, 1000)
    await sent(api, token, inbox.id)
    # when the total hovers: 1,099, 1,098, 999 + ... stays below 1,100
    await buy(api, token, 100, "a")
    await sent(api, token, inbox.id)
    assert [n["kind"] for n in await notices(api, token)] == ["BALANCE_BELOW_THRESHOLD"]
    # when it reaches 1,100 or more
    await buy(api, token, 100, "b")
    # then
    shown = await notices(api, token)
    assert [(n["kind"], n["value"]) for n in shown] == [
        ("BALANCE_RECOVERED", 1198),
        ("BALANCE_BELOW_THRESHOLD", 999),
    ]
    assert (await data(api, token, ALERTS))["account"]["balanceAlerts"][0]["state"] == "ARMED"


async def test_several_recoveries_are_raised_lowest_first(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    token = account.token.secret
    await data(api, token, SET_PAYMENT_METHOD)
    await set_alerts(api, token, 1005, 1002)  # both FIRED at 1,000; recover at 1,106 and 1,103
    await buy(api, token, 200, "up")
    rows = await Notice.filter(account_id=account.account.id).order_by("id")
    assert [(n.kind.value, n.threshold_credits) for n in rows] == [
        ("BALANCE_RECOVERED", 1002),
        ("BALANCE_RECOVERED", 1005),
    ]


async def test_a_kept_threshold_keeps_its_state(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    token = account.token.secret
    await set_alerts(api, token, 1000)
    await sent(api, token, inbox.id)
    payload = await set_alerts(api, token, 1000, 500)
    assert [(a["thresholdCredits"], a["state"]) for a in payload["alerts"]] == [
        (500, "ARMED"), (1000, "FIRED"),
    ]  # fmt: skip
    # and the kept one does not fire again
    await sent(api, token, inbox.id)
    assert len(await notices(api, token)) == 1


async def test_an_empty_list_removes_every_alert(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    token = account.token.secret
    await set_alerts(api, token, 1000)
    assert (await set_alerts(api, token))["alerts"] == []
    await sent(api, token, inbox.id)
    assert await notices(api, token) == []
    row = await Account.get(id=account.account.id)
    assert (row.alert_fire_below, row.alert_recover_at) == (None, None)


async def test_a_refund_and_a_new_month_are_changes_that_alerts_watch(
    api: Api, account: NewAccount, inbox: Inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given 1,000 fired by a send to 990, then 1,090 after a purchase (recovery needs 1,100)
    token = account.token.secret
    await data(api, token, SET_PAYMENT_METHOD)
    await set_alerts(api, token, 1000)
    await sent(api, token, inbox.id, segments=10)
    await buy(api, token, 100, "a")
    message = await Message.get_or_none(inbox_id=inbox.id)
    assert message is not None
    assert message.provider_message_id is not None
    # when the carrier reports the send failed: its refund takes the total to 1,100
    await record_delivery_status(
        runtime=runtime, provider_message_id=message.provider_message_id, delivered=False
    )
    # then
    assert [(n["kind"], n["value"]) for n in await notices(api, token)] == [
        ("BALANCE_RECOVERED", 1100),
        ("BALANCE_BELOW_THRESHOLD", 990),
    ]
    # and a new month that regrants the allotment crosses nothing
    clock.advance(timedelta(days=40))
    assert await total(api, token) == 1100
    assert len(await notices(api, token)) == 2


async def test_notices_page_newest_first_and_filter_by_kind(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    token = account.token.secret
    await set_alerts(api, token, 999, 998, 997)
    for _ in range(4):  # 996: each threshold crossed once
        await sent(api, token, inbox.id)
    first = await data(api, token, NOTICES, first=2)
    page = first["account"]["notices"]
    assert [n["thresholdCredits"] for n in page["nodes"]] == [997, 998]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = await data(api, token, NOTICES, first=2, after=page["pageInfo"]["endCursor"])
    assert [n["thresholdCredits"] for n in rest["account"]["notices"]["nodes"]] == [999]
    assert await notices(api, token, kinds=["BALANCE_RECOVERED"]) == []
