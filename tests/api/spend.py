"""Documents and helpers shared by the spend-control API tests (alerts, budgets, webhooks)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from tests.conftest import Api

CUSTOMER = "+14155550123"
SEND = """mutation($input: SendMessageInput!) {
  sendMessage(input: $input) { message { id } userErrors { code field message } } }"""
SET_ALERTS = """mutation($thresholds: [Int!]!) {
  setBalanceAlerts(input: {thresholds: $thresholds}) {
    alerts { id thresholdCredits state lastFiredAt } userErrors { code field message } } }"""
ALERTS = "{ account { balanceAlerts { thresholdCredits state lastFiredAt } } }"
NOTICES = """query($first: Int, $after: String, $kinds: [NoticeKind!]) {
  account { notices(first: $first, after: $after, kinds: $kinds) {
    nodes { id kind thresholdCredits value createdAt inbox { id name } }
    pageInfo { hasNextPage endCursor } } } }"""
SET_BUDGET = """mutation($input: SetInboxBudgetInput!) {
  setInboxBudget(input: $input) {
    inbox { id budget { monthlyCredits mode usedThisPeriod remaining periodEnd } }
    userErrors { code field message } } }"""
BUDGETS = """{ account { inboxes { id phoneNumber
  budget { monthlyCredits mode usedThisPeriod remaining periodEnd } } } }"""
BALANCE = "{ account { balance { total } } }"
SET_PAYMENT_METHOD = """mutation { setPaymentMethod(input: {token: "tok_visa"}) {
  userErrors { code } } }"""
BUY = """mutation($credits: Int!, $key: String!) {
  buyCredits(input: {credits: $credits, idempotencyKey: $key}) { userErrors { code } } }"""


def body_of(segments: int) -> str:
    """A GSM-7 body of exactly `segments` segments (one credit each)."""
    return "x" if segments == 1 else "x" * (153 * segments)


async def send(api: Api, token: str, inbox_id: int | str, *, segments: int = 1) -> dict[str, Any]:
    """sendMessage's payload."""
    variables = {"input": {"inboxId": str(inbox_id), "to": CUSTOMER, "body": body_of(segments)}}
    body = await api(SEND, variables, token=token)
    assert "errors" not in body, body
    payload: dict[str, Any] = body["data"]["sendMessage"]
    return payload


async def sent(api: Api, token: str, inbox_id: int | str, *, segments: int = 1) -> None:
    payload = await send(api, token, inbox_id, segments=segments)
    assert payload["userErrors"] == [], payload


async def data(api: Api, token: str, query: str, **variables: Any) -> dict[str, Any]:
    body = await api(query, variables, token=token)
    assert "errors" not in body, body
    answer: dict[str, Any] = body["data"]
    return answer


async def notices(api: Api, token: str, **variables: Any) -> list[dict[str, Any]]:
    """The account's notices, newest first."""
    shown: list[dict[str, Any]] = (await data(api, token, NOTICES, **variables))["account"][
        "notices"
    ]["nodes"]
    return shown


async def total(api: Api, token: str) -> int:
    value: int = (await data(api, token, BALANCE))["account"]["balance"]["total"]
    return value


async def buy(api: Api, token: str, credits: int, key: str) -> None:
    answer = await data(api, token, BUY, credits=credits, key=key)
    assert answer["buyCredits"]["userErrors"] == [], answer


async def budget_of(api: Api, token: str, inbox_id: int | str) -> dict[str, Any] | None:
    inboxes = (await data(api, token, BUDGETS))["account"]["inboxes"]
    found: dict[str, Any] | None = next(i for i in inboxes if i["id"] == str(inbox_id))["budget"]
    return found


async def set_budget(
    api: Api, token: str, inbox_id: int | str, credits: int | None, mode: str = "SOFT"
) -> dict[str, Any]:
    variables = {"inboxId": str(inbox_id), "monthlyCredits": credits, "mode": mode}
    payload: dict[str, Any] = (await data(api, token, SET_BUDGET, input=variables))[
        "setInboxBudget"
    ]
    return payload


async def carrier(api: Api, path: str, payload: dict[str, str], secret: str) -> dict[str, Any]:
    """A carrier webhook (inbound message or delivery report), signed like the carrier's."""
    raw = json.dumps(payload).encode()
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    response = await api.http.post(
        path, content=raw, headers={"X-Tally-Signature": f"sha256={digest}"}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def inbound(api: Api, to: str, provider_id: str, secret: str, *, segments: int = 1) -> None:
    payload = {
        "from": CUSTOMER,
        "to": to,
        "body": body_of(segments),
        "providerMessageId": provider_id,
    }
    await carrier(api, "/webhooks/inbound", payload, secret)
