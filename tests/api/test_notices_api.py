"""Notices on Subscription.balanceChanged over real websockets (RULES.md, "Notices")."""

from __future__ import annotations

from models import Inbox, Notice
from services.accounts import NewAccount
from tests.api.spend import SET_ALERTS, SET_BUDGET, body_of
from tests.api.test_accounts_api import member_token
from tests.api.test_subscriptions import (
    Live,
    next_event,
    nothing_arrives,
    subscribe,
    transport_ws,
)
from tests.conftest import Api

WITH_NOTICES = """subscription { balanceChanged {
  balance { total } entries { kind credits }
  notices { kind thresholdCredits value inbox { id } } } }"""
DECLINING_CARD = """mutation { setPaymentMethod(input: {token: "tok_chargeDeclined"}) {
  userErrors { code } } }"""
AUTO_RECHARGE = """mutation { updateAutoRecharge(input: {enabled: true, thresholdCredits: 1000,
  rechargeCredits: 100, maxRechargesPerPeriod: 10}) { userErrors { code } } }"""
MEMBER_INBOX = "+14155550101"


async def test_a_change_carries_its_notices_on_its_balance_event(
    live: Live, account: NewAccount, inbox: Inbox
) -> None:
    token = account.token.secret
    await live.gql(token, SET_ALERTS, thresholds=[1000, 998])
    async with transport_ws(live.ws_url, token) as ws:
        await subscribe(ws, WITH_NOTICES)
        assert (await next_event(ws))["notices"] == []
        # when
        await live.send(token, inbox.id, body_of(2))
        # then
        event = await next_event(ws)
        assert event["entries"] == [{"kind": "OUTBOUND_MESSAGE", "credits": -2}]
        assert event["notices"] == [
            {"kind": "BALANCE_BELOW_THRESHOLD", "thresholdCredits": 1000, "value": 998,
             "inbox": None},
        ]  # fmt: skip


async def test_a_member_sees_balance_notices_and_the_budgets_of_its_inboxes_only(
    live: Live, api: Api, account: NewAccount, inbox: Inbox
) -> None:
    # given budgets on the shared inbox (admins only) and on the member's own inbox
    admin = account.token.secret
    member = await member_token(api, account)
    own = await Inbox.get(phone_number=MEMBER_INBOX)
    for budgeted in (inbox, own):
        variables = {"inboxId": str(budgeted.id), "monthlyCredits": 2}
        await live.gql(admin, SET_BUDGET, input=variables)
    await live.gql(admin, SET_ALERTS, thresholds=[999])
    async with transport_ws(live.ws_url, member) as ws:
        await subscribe(ws, WITH_NOTICES)
        await next_event(ws)
        # when the admin's send crosses the alert and the shared inbox's budget
        await live.send(admin, inbox.id, body_of(2))
        # then the member sees the change and the balance notice, not the budget's
        event = await next_event(ws)
        assert [n["kind"] for n in event["notices"]] == ["BALANCE_BELOW_THRESHOLD"]
        # when the member's own send reaches its own inbox's budget
        await live.send(member, own.id, body_of(2))
        event = await next_event(ws)
        assert event["notices"] == [
            {"kind": "BUDGET_WARNING", "thresholdCredits": None, "value": 2,
             "inbox": {"id": str(own.id)}},
            {"kind": "BUDGET_REACHED", "thresholdCredits": None, "value": 2,
             "inbox": {"id": str(own.id)}},
        ]  # fmt: skip
    kinds = await Notice.filter(account_id=account.account.id).values_list("kind", flat=True)
    assert len(kinds) == 5


async def test_a_declined_auto_recharge_raises_failed_and_its_event_has_no_entries(
    live: Live, api: Api, account: NewAccount, inbox: Inbox
) -> None:
    # given auto-recharge below 1,000 on a card that declines
    admin = account.token.secret
    member = await member_token(api, account)
    await live.gql(admin, DECLINING_CARD)
    await live.gql(admin, AUTO_RECHARGE)
    async with transport_ws(live.ws_url, admin) as ws, transport_ws(live.ws_url, member) as mws:
        await subscribe(ws, WITH_NOTICES)
        await subscribe(mws, WITH_NOTICES)
        await next_event(ws)
        await next_event(mws)
        # when three sends each trigger a recharge that is declined
        for _ in range(3):
            await live.send(admin, inbox.id)
        # then each send's event, then the decline's own event with no entries
        seen = [await next_event(ws) for _ in range(6)]
        assert [(len(e["entries"]), [n["kind"] for n in e["notices"]]) for e in seen] == [
            (1, []), (0, ["AUTO_RECHARGE_FAILED"]),
            (1, []), (0, ["AUTO_RECHARGE_FAILED"]),
            (1, []), (0, ["AUTO_RECHARGE_FAILED", "AUTO_RECHARGE_DISABLED"]),
        ]  # fmt: skip
        assert [n["value"] for n in seen[5]["notices"]] == [997, 997]
        # and a member gets the sends' events but not the declines'
        member_seen = [await next_event(mws) for _ in range(3)]
        assert all(len(e["entries"]) == 1 and e["notices"] == [] for e in member_seen)
        await nothing_arrives(mws)
