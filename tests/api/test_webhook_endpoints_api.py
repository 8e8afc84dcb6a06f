"""Outgoing webhooks through the API: endpoints, signed deliveries, retries, the URL guard
(RULES.md, "Outgoing webhooks"). Every receiver listens on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from api.settings import Settings
from models import Inbox, Notice, WebhookDelivery, WebhookEndpoint
from models.enums import DeliveryStatus
from services import notices, outbox, url_guard
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.dispatcher import Dispatcher, DispatchRules
from services.notices import RaisedNotice
from tests.api.receiver import Receiver, eventually, receiving, verified
from tests.api.spend import SET_ALERTS, data, sent
from tests.api.test_accounts_api import member_token
from tests.conftest import Api

CREATE = """mutation($url: String!, $events: [NoticeKind!]) {
  createWebhookEndpoint(input: {url: $url, events: $events}) {
    endpoint { id url events createdAt } secret userErrors { code field message } } }"""
DELETE = """mutation($id: ID!) { deleteWebhookEndpoint(input: {endpointId: $id}) {
  deleted userErrors { code field } } }"""
ENDPOINTS = """{ account { webhookEndpoints { id url events deliveries(first: 10) {
  nodes { id eventId status attempts lastStatusCode lastError nextAttemptAt createdAt
          notice { id kind thresholdCredits value } }
  pageInfo { hasNextPage } } } } }"""
ALL_KINDS = [
    "BALANCE_BELOW_THRESHOLD", "BALANCE_RECOVERED", "BUDGET_WARNING", "BUDGET_REACHED",
    "AUTO_RECHARGE_FAILED", "AUTO_RECHARGE_DISABLED",
]  # fmt: skip
PUBLIC_URL = "https://93.184.215.14/hooks/tally"  # a literal public address: never resolved


@pytest.fixture
def settings(database: str) -> Settings:
    """The API tests' settings, with loopback receivers allowed."""
    return Settings(
        database_url=database,
        secret_key="test-secret",
        webhook_secret="hook-secret",
        webhook_allow_private=True,
    )


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as listening:
        yield listening


@pytest.fixture
def rules() -> DispatchRules:
    return DispatchRules(retry_schedule=(10, 60), allow_private=True, poll_seconds=0.05)


@pytest.fixture
async def dispatcher(clock: FrozenClock, rules: DispatchRules) -> AsyncIterator[Dispatcher]:
    running = Dispatcher(clock=clock, rules=rules)
    async with running.running():
        yield running


async def create(api: Api, token: str, url: str, events: list[str] | None = None) -> dict:
    payload: dict = (await data(api, token, CREATE, url=url, events=events))[
        "createWebhookEndpoint"
    ]
    return payload


async def endpoints(api: Api, token: str) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = (await data(api, token, ENDPOINTS))["account"]["webhookEndpoints"]
    return shown


async def cross_a_threshold(api: Api, token: str, inbox: Inbox) -> None:
    """One send that raises one BALANCE_BELOW_THRESHOLD notice (1,000 -> 998, below 999)."""
    await data(api, token, SET_ALERTS, thresholds=[999])
    await sent(api, token, inbox.id, segments=2)


def errors(payload: dict) -> list[tuple[str, list[str] | None]]:
    return [(e["code"], e["field"]) for e in payload["userErrors"]]


async def test_an_endpoint_shows_its_secret_once_and_receives_every_kind_by_default(
    api: Api, account: NewAccount, clock: FrozenClock
) -> None:
    token = account.token.secret
    payload = await create(api, token, PUBLIC_URL)
    assert payload["userErrors"] == []
    assert re.fullmatch(r"whsec_[0-9a-f]{48}", payload["secret"])
    assert payload["endpoint"]["events"] == ALL_KINDS
    assert payload["endpoint"]["createdAt"] == clock.now().isoformat()
    listed = await endpoints(api, token)
    assert [(e["url"], e["events"]) for e in listed] == [(PUBLIC_URL, ALL_KINDS)]
    assert payload["secret"] not in json.dumps(listed)


async def test_endpoints_are_listed_oldest_first_with_the_kinds_they_chose(
    api: Api, account: NewAccount
) -> None:
    token = account.token.secret
    await create(api, token, PUBLIC_URL + "/1", ["BUDGET_REACHED", "BALANCE_RECOVERED"])
    await create(api, token, PUBLIC_URL + "/2")
    listed = await endpoints(api, token)
    assert [e["url"] for e in listed] == [PUBLIC_URL + "/1", PUBLIC_URL + "/2"]
    assert listed[0]["events"] == ["BALANCE_RECOVERED", "BUDGET_REACHED"]


@pytest.mark.parametrize(
    ("url", "events", "field"),
    [
        ("ftp://93.184.215.14/x", None, ["input", "url"]),
        ("https:///nohost", None, ["input", "url"]),
        ("https://user:pw@93.184.215.14/x", None, ["input", "url"]),
        ("https://93.184.215.14/" + "x" * 2030, None, ["input", "url"]),
        ("not a url", None, ["input", "url"]),
        (PUBLIC_URL, [], ["input", "events"]),
    ],
    ids=["scheme", "no host", "credentials", "too long", "garbage", "no events"],
)
async def test_a_bad_endpoint_is_invalid_value_and_stores_nothing(
    api: Api, account: NewAccount, url: str, events: list[str] | None, field: list[str]
) -> None:
    payload = await create(api, account.token.secret, url, events)
    assert (payload["endpoint"], payload["secret"]) == (None, None)
    assert errors(payload) == [("INVALID_VALUE", field)]
    assert await endpoints(api, account.token.secret) == []


async def test_a_url_of_2048_characters_is_accepted(api: Api, account: NewAccount) -> None:
    url = PUBLIC_URL + "/" + "x" * (2048 - len(PUBLIC_URL) - 1)
    assert (await create(api, account.token.secret, url))["userErrors"] == []


async def test_the_eleventh_endpoint_is_invalid_value_with_no_field(
    api: Api, account: NewAccount
) -> None:
    token = account.token.secret
    for n in range(10):
        assert (await create(api, token, f"{PUBLIC_URL}/{n}"))["userErrors"] == []
    payload = await create(api, token, PUBLIC_URL + "/11")
    assert errors(payload) == [("INVALID_VALUE", None)]
    # a deleted endpoint makes room again
    first = (await endpoints(api, token))[0]["id"]
    assert (await data(api, token, DELETE, id=first))["deleteWebhookEndpoint"]["deleted"]
    assert (await create(api, token, PUBLIC_URL + "/11"))["userErrors"] == []


async def test_a_member_may_not_register_list_or_delete_endpoints(
    api: Api, account: NewAccount
) -> None:
    token = await member_token(api, account)
    for query, variables in (
        (CREATE, {"url": PUBLIC_URL}),
        (ENDPOINTS, {}),
        (DELETE, {"id": "1"}),
    ):
        body = await api(query, variables, token=token)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_notice_is_delivered_signed_with_the_endpoint_secret(
    api: Api, account: NewAccount, inbox: Inbox, receiver: Receiver, dispatcher: Dispatcher,
    clock: FrozenClock,
) -> None:  # fmt: skip
    # given
    token = account.token.secret
    created = await create(api, token, receiver.url)
    # when
    await cross_a_threshold(api, token, inbox)
    # then one POST, signed with the secret shown at creation
    [delivered] = await receiver.wait_for(1)
    assert verified(delivered, created["secret"])
    assert not verified(delivered, "whsec_" + "0" * 48)
    assert delivered.headers["content-type"] == "application/json"
    t = int(delivered.headers["tally-signature"].split(",")[0].removeprefix("t="))
    assert t == int(clock.now().timestamp())
    notice = await Notice.get(account_id=account.account.id)
    assert delivered.json == {
        "id": notice.event_id,
        "type": "balance_below_threshold",
        "createdAt": clock.now().isoformat(),
        "accountId": str(account.account.id),
        "data": {
            "id": str(notice.id),
            "kind": "BALANCE_BELOW_THRESHOLD",
            "thresholdCredits": 999,
            "inbox": None,
            "value": 998,
            "createdAt": clock.now().isoformat(),
        },
    }
    # and the delivery is recorded as succeeded
    await eventually(lambda: _status_is(notice.id, DeliveryStatus.SUCCEEDED))
    [shown] = (await endpoints(api, token))[0]["deliveries"]["nodes"]
    assert shown["eventId"] == notice.event_id
    assert (shown["status"], shown["attempts"], shown["lastStatusCode"]) == ("SUCCEEDED", 1, 200)
    assert (shown["lastError"], shown["nextAttemptAt"]) == (None, None)
    assert shown["notice"] == {
        "id": str(notice.id), "kind": "BALANCE_BELOW_THRESHOLD", "thresholdCredits": 999,
        "value": 998,
    }  # fmt: skip


async def _status_is(notice_id: int, status: DeliveryStatus) -> bool:
    return await WebhookDelivery.filter(notice_id=notice_id, status=status).exists()


async def test_a_budget_notice_names_its_inbox_in_the_body(
    api: Api, account: NewAccount, inbox: Inbox, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    token = account.token.secret
    await create(api, token, receiver.url, ["BUDGET_REACHED"])
    variables = {"inboxId": str(inbox.id), "monthlyCredits": 2}
    await data(
        api, token,
        "mutation($input: SetInboxBudgetInput!) { setInboxBudget(input: $input) { inbox { id } } }",
        input=variables,
    )  # fmt: skip
    await sent(api, token, inbox.id, segments=2)  # WARNING and REACHED: only REACHED is wanted
    [delivered] = await receiver.wait_for(1)
    assert delivered.json["type"] == "budget_reached"
    assert delivered.json["data"]["inbox"] == {"id": str(inbox.id), "name": "Support"}
    assert await WebhookDelivery.all().count() == 1


async def test_an_endpoint_gets_only_the_kinds_it_chose(
    api: Api, account: NewAccount, inbox: Inbox
) -> None:
    token = account.token.secret
    await create(api, token, PUBLIC_URL, ["BUDGET_REACHED"])
    await cross_a_threshold(api, token, inbox)
    assert await Notice.all().count() == 1
    assert await WebhookDelivery.all().count() == 0


async def test_a_failing_receiver_is_retried_on_the_schedule_with_the_same_event_id(
    api: Api, account: NewAccount, inbox: Inbox, receiver: Receiver, dispatcher: Dispatcher,
    clock: FrozenClock,
) -> None:  # fmt: skip
    # given a receiver that answers 500, and a schedule of 10 s then 60 s (3 attempts)
    receiver.status = 500
    token = account.token.secret
    await create(api, token, receiver.url)
    await cross_a_threshold(api, token, inbox)
    await receiver.wait_for(1)
    await eventually(lambda: _attempts_are(1))
    [shown] = (await endpoints(api, token))[0]["deliveries"]["nodes"]
    assert (shown["status"], shown["attempts"], shown["lastStatusCode"]) == ("PENDING", 1, 500)
    assert shown["lastError"] == "HTTP 500"
    assert shown["nextAttemptAt"] == (clock.now() + timedelta(seconds=10)).isoformat()
    # when not yet due: nothing
    clock.advance(timedelta(seconds=9))
    outbox.ring()
    await eventually(lambda: _attempts_are(1))
    # when due: the second, then the third and last attempt
    clock.advance(timedelta(seconds=1))
    outbox.ring()
    await receiver.wait_for(2)
    await eventually(lambda: _attempts_are(2))
    clock.advance(timedelta(seconds=60))
    outbox.ring()
    await receiver.wait_for(3)
    await eventually(lambda: _attempts_are(3))
    # then
    [shown] = (await endpoints(api, token))[0]["deliveries"]["nodes"]
    assert (shown["status"], shown["attempts"], shown["nextAttemptAt"]) == ("FAILED", 3, None)
    assert len({d.json["id"] for d in receiver.received}) == 1
    clock.advance(timedelta(days=1))
    outbox.ring()
    await _no_more(receiver, 3)


async def _attempts_are(count: int) -> bool:
    rows = await WebhookDelivery.all()
    return len(rows) == 1 and rows[0].attempts == count and rows[0].claimed_until_us is None


async def _no_more(receiver: Receiver, count: int) -> None:
    with pytest.raises(TimeoutError):
        await receiver.wait_for(count + 1, seconds=0.3)


async def test_a_2xx_other_than_200_is_success_and_a_redirect_is_not_followed(
    api: Api, account: NewAccount, inbox: Inbox, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    token = account.token.secret
    await create(api, token, receiver.url)
    receiver.status = 302
    await cross_a_threshold(api, token, inbox)
    await receiver.wait_for(1)
    await eventually(lambda: _attempts_are(1))
    delivery = await WebhookDelivery.get()
    assert (delivery.status, delivery.last_status_code) == (DeliveryStatus.PENDING, 302)
    receiver.status = 204
    await data(api, token, SET_ALERTS, thresholds=[997])
    await sent(api, token, inbox.id, segments=2)
    await receiver.wait_for(2)
    second = await Notice.filter(threshold_credits=997).first()
    assert second is not None
    await eventually(lambda: _status_is(second.id, DeliveryStatus.SUCCEEDED))


async def test_deleting_an_endpoint_cancels_its_pending_deliveries(
    api: Api, account: NewAccount, inbox: Inbox, receiver: Receiver, dispatcher: Dispatcher,
    clock: FrozenClock,
) -> None:  # fmt: skip
    receiver.status = 500
    token = account.token.secret
    endpoint = (await create(api, token, receiver.url))["endpoint"]
    await cross_a_threshold(api, token, inbox)
    await eventually(lambda: _attempts_are(1))
    # when
    answer = await data(api, token, DELETE, id=endpoint["id"])
    # then
    assert answer["deleteWebhookEndpoint"] == {"deleted": True, "userErrors": []}
    delivery = await WebhookDelivery.get()
    assert (delivery.status, delivery.next_attempt_us) == (DeliveryStatus.FAILED, None)
    assert await endpoints(api, token) == []
    clock.advance(timedelta(minutes=5))
    outbox.ring()
    await _no_more(receiver, 1)
    # and it is gone: deleting it again is NOT_FOUND
    again = await data(api, token, DELETE, id=endpoint["id"])
    assert again["deleteWebhookEndpoint"]["userErrors"] == [
        {"code": "NOT_FOUND", "field": ["input", "endpointId"]}
    ]


async def test_a_delivery_still_pending_for_a_deleted_endpoint_fails_at_its_attempt(
    api: Api, account: NewAccount, inbox: Inbox, receiver: Receiver, clock: FrozenClock,
    rules: DispatchRules,
) -> None:  # fmt: skip
    # given a pending delivery whose endpoint is deleted without it being cancelled
    token = account.token.secret
    endpoint = (await create(api, token, receiver.url))["endpoint"]
    await cross_a_threshold(api, token, inbox)
    await WebhookEndpoint.filter(id=int(endpoint["id"])).update(deleted_at=clock.now())
    # when it is attempted
    async with Dispatcher(clock=clock, rules=rules).running():
        await eventually(lambda: _attempts_are(1))
    # then nothing is sent, and it fails for good instead of waiting for a retry
    assert receiver.received == []
    delivery = await WebhookDelivery.get()
    assert (delivery.status, delivery.next_attempt_us) == (DeliveryStatus.FAILED, None)
    assert delivery.last_error == outbox.CANCELLED


async def test_a_malformed_endpoint_id_reads_like_an_unknown_endpoint(
    api: Api, account: NewAccount
) -> None:
    deleting = """mutation($id: ID!) { deleteWebhookEndpoint(input: {endpointId: $id}) {
      userErrors { code message } } }"""
    answers = [
        (await data(api, account.token.secret, deleting, id=endpoint_id))
        for endpoint_id in ("not-an-id", "987654")
    ]
    assert [a["deleteWebhookEndpoint"]["userErrors"] for a in answers] == 2 * [
        [{"code": "NOT_FOUND", "message": "No such webhook endpoint."}]
    ]


async def test_a_notice_of_a_rolled_back_change_is_never_sent(
    api: Api, account: NewAccount, inbox: Inbox, receiver: Receiver, dispatcher: Dispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # given a send whose transaction fails after its notices were written
    token = account.token.secret
    await create(api, token, receiver.url)
    await data(api, token, SET_ALERTS, thresholds=[999])

    write = notices.record

    async def write_then_fail(*args: Any, **kwargs: Any) -> list[RaisedNotice]:
        await write(*args, **kwargs)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(notices, "record", write_then_fail)
    variables = {"inboxId": str(inbox.id), "to": "+14155550123", "body": "x" * 200}
    body = await api(
        """mutation($input: SendMessageInput!) { sendMessage(input: $input) { message { id } } }""",
        {"input": variables},
        token=token,
    )
    assert body.get("errors")
    # then nothing of it is left, and nothing is sent
    assert await Notice.all().count() == 0
    assert await WebhookDelivery.all().count() == 0
    outbox.ring()
    await _no_more(receiver, 0)


async def test_the_url_guard_runs_again_before_every_attempt(
    api: Api, account: NewAccount, inbox: Inbox, receiver: Receiver, clock: FrozenClock,
    rules: DispatchRules,
) -> None:  # fmt: skip
    # given an endpoint on loopback, registered while private addresses were allowed
    token = account.token.secret
    await create(api, token, receiver.url)
    await cross_a_threshold(api, token, inbox)
    # when a dispatcher that refuses private addresses attempts it
    strict = Dispatcher(clock=clock, rules=dataclasses.replace(rules, allow_private=False))
    async with strict.running():
        await eventually(lambda: _attempts_are(1))
    # then nothing reached the receiver, and the refusal is recorded for a retry
    assert receiver.received == []
    delivery = await WebhookDelivery.get()
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.last_status_code is None
    assert (delivery.last_error or "").startswith("Refused: 127.0.0.1 is, or resolves to")


async def test_a_name_that_rebinds_to_loopback_after_the_check_is_never_connected_to(
    api: Api, account: NewAccount, inbox: Inbox, receiver: Receiver, clock: FrozenClock,
    rules: DispatchRules, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # given an endpoint named `localhost`, whose resolver answers the check before the
    # attempt with a public address and only later with loopback (DNS rebinding)
    token = account.token.secret
    await create(api, token, receiver.url.replace("127.0.0.1", "localhost"))
    await cross_a_threshold(api, token, inbox)
    real_resolve = url_guard.resolve
    answers = iter([[ipaddress.ip_address("93.184.215.14")]])

    async def rebinding(host: str, port: int) -> list[url_guard.Address]:
        return next(answers, None) or await real_resolve(host, port)

    monkeypatch.setattr(url_guard, "resolve", rebinding)
    # when a dispatcher that refuses private addresses attempts it
    strict = Dispatcher(clock=clock, rules=dataclasses.replace(rules, allow_private=False))
    async with strict.running():
        await eventually(lambda: _attempts_are(1))
    # then the check passed, yet the connection went nowhere near the receiver
    assert next(answers, None) is None
    assert receiver.received == []
    delivery = await WebhookDelivery.get()
    assert delivery.status is DeliveryStatus.PENDING
    assert (delivery.last_error or "").startswith(
        "Refused: localhost is, or resolves to, a non-public address"
    )


async def test_a_receiver_that_never_answers_delays_neither_other_endpoints_nor_requests(
    api: Api, account: NewAccount, inbox: Inbox, clock: FrozenClock
) -> None:
    # given a receiver that never answers, one that does, and a dispatcher bound to 4
    # attempts per endpoint
    token = account.token.secret
    rules = DispatchRules(allow_private=True, poll_seconds=0.05, per_endpoint=4)
    async with receiving(Receiver(hang=True)) as stuck, receiving() as healthy:
        await create(api, token, stuck.url)
        await create(api, token, healthy.url)
        await data(api, token, SET_ALERTS, thresholds=[999, 998, 997, 996, 995])
        async with Dispatcher(clock=clock, rules=rules).running():
            # when six sends raise five notices, each for both endpoints
            committed = []
            for _ in range(6):
                await sent(api, token, inbox.id)
                committed.append(time.monotonic())
            await healthy.wait_for(5)
            # and API requests are made while the stuck receiver holds its attempts
            latencies = []
            for _ in range(20):
                start = time.monotonic()
                await data(api, token, "{ account { balance { total } } }")
                latencies.append(time.monotonic() - start)
        # then the healthy endpoint got each notice promptly
        delays = [d.at - c for d, c in zip(healthy.received, committed[1:], strict=True)]
        assert max(delays) < 0.5, delays
        assert max(latencies) < 0.25, latencies
        # and the stuck one holds no more than its bound at once
        assert len(stuck.received) == 4
