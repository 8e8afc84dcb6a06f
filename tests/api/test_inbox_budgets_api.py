"""Inbox budgets through the API (RULES.md, "Inbox budgets" and "Notices")."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from api.settings import Settings
from models import Inbox, InboxPeriodUsage, LedgerEntry, Message, Notice
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.payments import SimulatedPaymentProvider
from tests.api.spend import (
    SET_BUDGET,
    SET_PAYMENT_METHOD,
    budget_of,
    carrier,
    data,
    inbound,
    notices,
    send,
    sent,
    set_budget,
    total,
)
from tests.api.test_accounts_api import member_token
from tests.conftest import Api

MEMBER_INBOX = "+14155550101"
OTHERS = """{ account { members { personalInbox { phoneNumber budget { monthlyCredits } } } } }"""
AUTO_RECHARGE = """mutation { updateAutoRecharge(input: {enabled: true, thresholdCredits: 5000,
  rechargeCredits: 100, maxRechargesPerPeriod: 3}) { userErrors { code } } }"""


def kinds(shown: list[dict]) -> list[tuple[str, int]]:
    return [(n["kind"], n["value"]) for n in shown]


async def test_a_budget_counts_the_months_messages_from_before_it_was_set(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    # given 3 credits used before the budget exists
    token = account.token.secret
    await sent(api, token, inbox.id, segments=3)
    assert await budget_of(api, token, inbox.id) is None
    # when
    payload = await set_budget(api, token, inbox.id, 10)
    # then
    assert payload["userErrors"] == []
    assert payload["inbox"]["budget"] == {
        "monthlyCredits": 10,
        "mode": "SOFT",
        "usedThisPeriod": 3,
        "remaining": 7,
        "periodEnd": "2026-02-15T12:00:00+00:00",
    }
    # and setting it raises no notice
    assert await notices(api, token) == []


async def test_null_removes_the_budget(api: Api, account: NewAccount, inbox: Inbox) -> None:
    token = account.token.secret
    await set_budget(api, token, inbox.id, 10, "HARD")
    payload = await set_budget(api, token, inbox.id, None)
    assert payload == {"inbox": {"id": str(inbox.id), "budget": None}, "userErrors": []}
    await sent(api, token, inbox.id, segments=10)
    await sent(api, token, inbox.id, segments=10)
    assert await notices(api, token) == []


@pytest.mark.parametrize("credits", [0, -5, 1_000_001])
async def test_a_budget_outside_1_to_a_million_is_invalid_value(
    api: Api, account: NewAccount, inbox: Inbox, credits: int
) -> None:
    token = account.token.secret
    payload = await set_budget(api, token, inbox.id, credits)
    assert payload["inbox"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("INVALID_VALUE", ["input", "monthlyCredits"])
    ]
    assert (await Inbox.get(id=inbox.id)).budget_credits is None


async def test_an_unknown_inbox_is_not_found(api: Api, account: NewAccount) -> None:
    payload = await set_budget(api, account.token.secret, 999_999, 10)
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("NOT_FOUND", ["input", "inboxId"])
    ]


async def test_a_member_may_not_set_a_budget(api: Api, account: NewAccount, inbox: Inbox) -> None:
    token = await member_token(api, account)
    variables = {"input": {"inboxId": str(inbox.id), "monthlyCredits": 10}}
    body = await api(SET_BUDGET, variables, token=token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await Inbox.get(id=inbox.id)).budget_credits is None


async def test_a_member_sees_the_budget_of_its_inbox_and_not_of_others(
    api: Api, account: NewAccount
) -> None:
    # given two members with a personal inbox each, both with budgets
    admin = account.token.secret
    token = await member_token(api, account)
    other = await data(
        api,
        admin,
        """mutation { createMember(input: {name: "Cy",
        email: "cy@acme.example", personalPhoneNumber: "+14155550102"}) { member { id } } }""",
    )
    assert other["createMember"]["member"]["id"]
    for row in await Inbox.filter(account_id=account.account.id):
        await set_budget(api, admin, row.id, 50)
    own = await Inbox.get(phone_number=MEMBER_INBOX)
    # then the member reads its own inbox's budget
    budget = await budget_of(api, token, own.id)
    assert budget is not None
    assert budget["monthlyCredits"] == 50
    # and is FORBIDDEN the other member's
    body = await api(OTHERS, token=token)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert body["errors"][0]["path"][-1] == "budget"


async def test_soft_budget_warns_at_80_and_reaches_at_100_once_a_month(
    api: Api, account: NewAccount, inbox: Inbox, clock: FrozenClock
) -> None:
    token = account.token.secret
    await set_budget(api, token, inbox.id, 10)
    for _ in range(7):
        await sent(api, token, inbox.id)
    assert await notices(api, token) == []
    await sent(api, token, inbox.id)  # 8 of 10
    assert kinds(await notices(api, token)) == [("BUDGET_WARNING", 8)]
    await sent(api, token, inbox.id, segments=2)  # 10 of 10
    await sent(api, token, inbox.id, segments=3)  # 13: SOFT never refuses
    shown = await notices(api, token)
    assert kinds(shown) == [("BUDGET_REACHED", 10), ("BUDGET_WARNING", 8)]
    assert shown[0]["inbox"] == {"id": str(inbox.id), "name": "Support"}
    assert (await budget_of(api, token, inbox.id) or {})["remaining"] == -3
    # when the next subscription month starts, the count and the notices start afresh
    clock.advance(timedelta(days=31))
    assert (await budget_of(api, token, inbox.id) or {})["usedThisPeriod"] == 0
    await sent(api, token, inbox.id, segments=8)
    assert kinds(await notices(api, token))[0] == ("BUDGET_WARNING", 8)


async def test_one_change_crossing_both_raises_warning_then_reached(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    token = account.token.secret
    await set_budget(api, token, inbox.id, 10)
    await sent(api, token, inbox.id, segments=10)
    rows = await Notice.filter(account_id=account.account.id).order_by("id")
    assert [(n.kind.value, n.value, n.inbox_id) for n in rows] == [
        ("BUDGET_WARNING", 10, inbox.id),
        ("BUDGET_REACHED", 10, inbox.id),
    ]


async def test_a_balance_alert_comes_before_budget_notices_of_the_same_change(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    token = account.token.secret
    await data(
        api, token, "mutation { setBalanceAlerts(input: {thresholds: [995]}) { alerts { id } } }"
    )
    await set_budget(api, token, inbox.id, 10)
    await sent(api, token, inbox.id, segments=10)
    rows = await Notice.filter(account_id=account.account.id).order_by("id")
    assert [n.kind.value for n in rows] == [
        "BALANCE_BELOW_THRESHOLD", "BUDGET_WARNING", "BUDGET_REACHED",
    ]  # fmt: skip


async def test_hard_budget_refuses_a_send_that_would_pass_it_and_stores_nothing(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    # given 4 of a HARD 5 used
    token = account.token.secret
    await set_budget(api, token, inbox.id, 5, "HARD")
    await sent(api, token, inbox.id, segments=4)
    # when a 2-credit send would make it 6
    payload = await send(api, token, inbox.id, segments=2)
    # then
    assert payload["message"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [
        ("BUDGET_EXCEEDED", ["input", "inboxId"])
    ]
    assert await Message.filter(inbox_id=inbox.id).count() == 1
    assert await LedgerEntry.filter(account_id=account.account.id).count() == 2  # grant, send
    assert await total(api, token) == 996
    assert (await budget_of(api, token, inbox.id) or {})["usedThisPeriod"] == 4
    # and a send that fits still goes, reaching the budget
    await sent(api, token, inbox.id)
    assert kinds(await notices(api, token)) == [("BUDGET_REACHED", 5), ("BUDGET_WARNING", 4)]


async def test_a_send_refused_by_its_budget_triggers_no_auto_recharge(
    api: Api, account: NewAccount, inbox: Inbox, payments: SimulatedPaymentProvider
) -> None:
    # given auto-recharge that any committed change would trigger (threshold above the total)
    token = account.token.secret
    await data(api, token, SET_PAYMENT_METHOD)
    await data(api, token, AUTO_RECHARGE)
    await set_budget(api, token, inbox.id, 1, "HARD")
    # when
    payload = await send(api, token, inbox.id, segments=2)
    # then
    assert payload["userErrors"][0]["code"] == "BUDGET_EXCEEDED"
    assert payments.charges == {}
    assert await total(api, token) == 1000


async def test_inbound_messages_are_counted_and_may_pass_a_hard_budget(
    api: Api, account: NewAccount, inbox: Inbox, settings: Settings
) -> None:
    token = account.token.secret
    await set_budget(api, token, inbox.id, 2, "HARD")
    for n in range(3):
        await inbound(api, inbox.phone_number, f"in-{n}", settings.webhook_secret)
    budget = await budget_of(api, token, inbox.id)
    assert budget is not None
    assert (budget["usedThisPeriod"], budget["remaining"]) == (3, -1)
    assert kinds(await notices(api, token)) == [("BUDGET_REACHED", 2), ("BUDGET_WARNING", 2)]
    # and an outbound send is refused now
    assert (await send(api, token, inbox.id))["userErrors"][0]["code"] == "BUDGET_EXCEEDED"


async def test_a_refund_takes_its_credits_back_from_the_month(
    api: Api, account: NewAccount, inbox: Inbox, settings: Settings
) -> None:
    token = account.token.secret
    await set_budget(api, token, inbox.id, 10)
    await sent(api, token, inbox.id, segments=3)
    message = await Message.get(inbox_id=inbox.id)
    report = {"providerMessageId": message.provider_message_id or "", "status": "failed"}
    await carrier(api, "/webhooks/status", report, settings.webhook_secret)
    assert (await budget_of(api, token, inbox.id) or {})["usedThisPeriod"] == 0


async def test_twenty_concurrent_sends_never_pass_a_hard_budget_of_ten(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    token = account.token.secret
    await set_budget(api, token, inbox.id, 10, "HARD")
    # when
    answers = await asyncio.gather(*(send(api, token, inbox.id) for _ in range(20)))
    # then
    codes = sorted(e["code"] for a in answers for e in a["userErrors"])
    assert sum(1 for a in answers if a["message"] is not None) == 10
    assert codes == ["BUDGET_EXCEEDED"] * 10
    usage = await InboxPeriodUsage.get(inbox_id=inbox.id)
    assert usage.credits == 10
    assert await Message.filter(inbox_id=inbox.id).count() == 10
    reached = await Notice.filter(account_id=account.account.id, kind="BUDGET_REACHED").count()
    assert reached == 1
