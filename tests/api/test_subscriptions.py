"""Subscription.balanceChanged over real websockets, against uvicorn serving in the test's loop.

The server runs in-process so that the test owns its clock (period resets) and its
broker; every client is the `websockets` package speaking the wire protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import inspect
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
import websockets
from graphql import DocumentNode, ExecutionResult, parse
from websockets.asyncio.client import ClientConnection

from api.app import create_app
from api.background import sweep_due_allotments
from api.settings import Settings
from models import Account, Inbox, LedgerEntry
from models.enums import CreditBucket, LedgerEntryKind
from schema import schema
from schema.execution import PlainFieldsExecutor
from schema.subscriptions import BalanceEvent as SchemaBalanceEvent
from schema.subscriptions import SubscriptionExecutor, selects_only_plain_fields
from services.access import Principal
from services.accounts import NewAccount, create_account
from services.balance import Balance
from services.broadcast import BalanceEvent, LocalBroker
from services.clock import FrozenClock
from services.live import HOLD_SECONDS, LiveEvent, balance_changes
from services.messaging import send_message
from services.runtime import Runtime
from tests.api.test_accounts_api import UPDATE_ACCOUNT, member_token
from tests.conftest import Api
from tests.live_server import TALLY, Server, free_port

TRANSPORT_WS = websockets.Subprotocol("graphql-transport-ws")
LEGACY_WS = websockets.Subprotocol("graphql-ws")
TIMEOUT = 5.0
SHARED_NUMBER = "+14155550100"
CUSTOMER = "+14155550123"

BALANCE_CHANGED = """subscription { balanceChanged {
  balance { total subscriptionCredits purchasedCredits periodStart periodEnd }
  entries { id kind bucket credits balanceAfter amountCents createdAt } } }"""
WITH_MESSAGES = """subscription { balanceChanged {
  balance { total }
  entries { kind credits message { id direction body status providerMessageId } } } }"""
SEND = """mutation($input: SendMessageInput!) {
  sendMessage(input: $input) { message { id } userErrors { code } } }"""
SET_PAYMENT_METHOD = """mutation { setPaymentMethod(input: {token: "tok_visa"}) {
  paymentMethod { last4 } userErrors { code } } }"""
BUY = """mutation($key: String!) { buyCredits(input: {credits: 100, idempotencyKey: $key}) {
  entry { id } userErrors { code } } }"""
AUTO_RECHARGE = """mutation($threshold: Int!) { updateAutoRecharge(input: {
  enabled: true, thresholdCredits: $threshold, rechargeCredits: 100, maxRechargesPerPeriod: 3 })
  { autoRecharge { enabled } userErrors { code } } }"""
CREATE_TOKEN = """mutation($member: ID!) { createApiToken(input: {memberId: $member, name: "tab"}) {
  token tokenId userErrors { code } } }"""
REVOKE = """mutation($id: ID!) { revokeApiToken(input: {tokenId: $id}) { revoked } }"""
NEWEST_ENTRY = "{ account { ledger(first: 1) { nodes { id } } } }"
SHARED_WITH = """mutation($member: ID!) { createInbox(input: {name: "Team",
  phoneNumber: "+14155550178", memberIds: [$member]}) { inbox { id } userErrors { code } } }"""
CREATE_INBOX = """mutation { createInbox(input: {name: "Desk", phoneNumber: "+14155550177"}) {
  inbox { id } userErrors { code } } }"""


@dataclass
class Live:
    """A Tally server on a loopback port, with an HTTP client for its mutations."""

    ws_url: str
    http: httpx.AsyncClient
    webhook_secret: str

    async def gql(self, token: str, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
        body: dict[str, Any] = response.json()
        assert response.status_code == 200, body
        assert not body.get("errors"), body
        data: dict[str, Any] = body["data"]
        return data

    async def send(self, token: str, inbox_id: int, body: str = "Hi") -> str:
        variables = {"inboxId": str(inbox_id), "to": CUSTOMER, "body": body}
        sent = (await self.gql(token, SEND, input=variables))["sendMessage"]
        assert sent["userErrors"] == []
        message_id: str = sent["message"]["id"]
        return message_id

    async def inbound(self, to: str, provider_id: str, body: str = "Hello back") -> None:
        payload = {"from": CUSTOMER, "to": to, "body": body, "providerMessageId": provider_id}
        await self.webhook("/webhooks/inbound", payload)

    async def webhook(self, path: str, payload: dict[str, str]) -> None:
        """A carrier webhook, signed with HMAC-SHA256 of the raw body."""
        raw = json.dumps(payload).encode()
        digest = hmac.new(self.webhook_secret.encode(), raw, hashlib.sha256).hexdigest()
        response = await self.http.post(
            path, content=raw, headers={"X-Tally-Signature": f"sha256={digest}"}
        )
        assert response.status_code == 200, response.text


@contextlib.asynccontextmanager
async def serving(settings: Settings, runtime: Runtime) -> AsyncIterator[Live]:
    """uvicorn in this event loop (Tortoise is already open on it), until the block ends."""
    port = free_port()
    app = create_app(settings, runtime=runtime, manage_database=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("uvicorn did not start")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            yield Live(f"ws://127.0.0.1:{port}/graphql", http, settings.webhook_secret)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


# --- the wire protocols ---------------------------------------------------------------


async def receive(ws: ClientConnection, seconds: float = TIMEOUT) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), seconds))
    return message


async def send_json(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


@contextlib.asynccontextmanager
async def transport_ws(
    url: str, token: str | None, **options: Any
) -> AsyncIterator[ClientConnection]:
    """A graphql-transport-ws connection, acknowledged when a token is given."""
    async with websockets.connect(
        url, subprotocols=[TRANSPORT_WS], open_timeout=TIMEOUT, close_timeout=2, **options
    ) as ws:
        if token is not None:
            init = {"authorization": f"Bearer {token}"}
            await send_json(ws, {"type": "connection_init", "payload": init})
            assert (await receive(ws))["type"] == "connection_ack"
        yield ws


async def subscribe(ws: ClientConnection, query: str = BALANCE_CHANGED, op: str = "1") -> None:
    await send_json(ws, {"id": op, "type": "subscribe", "payload": {"query": query}})


async def next_event(ws: ClientConnection, op: str = "1", seconds: float = TIMEOUT) -> Any:
    message = await receive(ws, seconds)
    assert (message["type"], message["id"]) == ("next", op), message
    assert "errors" not in message["payload"], message
    return message["payload"]["data"]["balanceChanged"]


async def nothing_arrives(ws: ClientConnection, seconds: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


async def close_code(ws: ClientConnection, seconds: float = TIMEOUT) -> int | None:
    """The code of the close frame the server sends next (skipping other messages)."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as closed:
        return None if closed.rcvd is None else closed.rcvd.code


def kinds(event: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(e["kind"], e["bucket"], e["credits"]) for e in event["entries"]]


# --- events -------------------------------------------------------------------------


async def test_first_the_balance_then_every_change_in_commit_order(
    live: Live, account: NewAccount, inbox: Inbox, clock: FrozenClock, runtime: Runtime
) -> None:
    token = account.token.secret
    async with transport_ws(live.ws_url, token) as ws:
        await subscribe(ws)
        first = await next_event(ws)
        assert first["entries"] == []
        assert first["balance"] == {
            "total": 1000, "subscriptionCredits": 1000, "purchasedCredits": 0,
            "periodStart": "2026-01-15T12:00:00+00:00", "periodEnd": "2026-02-15T12:00:00+00:00",
        }  # fmt: skip

        # a send
        await live.send(token, inbox.id)
        sent = await next_event(ws)
        assert kinds(sent) == [("OUTBOUND_MESSAGE", "SUBSCRIPTION", -1)]
        assert (sent["balance"]["total"], sent["entries"][0]["balanceAfter"]) == (999, 999)
        # never before commit: the entry is already in the ledger when its event arrives
        newest = await live.gql(token, NEWEST_ENTRY)
        assert int(newest["account"]["ledger"]["nodes"][0]["id"]) >= int(sent["entries"][0]["id"])

        # an inbound message (signed carrier webhook)
        await live.inbound(SHARED_NUMBER, "SM-in-1")
        assert kinds(await next_event(ws)) == [("INBOUND_MESSAGE", "SUBSCRIPTION", -1)]

        # a purchase
        await live.gql(token, SET_PAYMENT_METHOD)
        await live.gql(token, BUY, key="buy-1")
        bought = await next_event(ws)
        assert kinds(bought) == [("PURCHASE", "PURCHASED", 100)]
        assert bought["entries"][0]["amountCents"] == 200
        assert bought["balance"]["total"] == 1098

        # an auto-recharge, triggered by the send that takes the total below the threshold
        await live.gql(token, AUTO_RECHARGE, threshold=1098)
        await live.send(token, inbox.id)
        assert kinds(await next_event(ws)) == [("OUTBOUND_MESSAGE", "SUBSCRIPTION", -1)]
        recharged = await next_event(ws)
        assert kinds(recharged) == [("AUTO_RECHARGE", "PURCHASED", 100)]
        assert (recharged["balance"]["total"], recharged["entries"][0]["amountCents"]) == (
            1197,
            200,
        )

        # the monthly reset, applied by the background sweep once the month is over
        clock.advance(timedelta(days=31))
        assert await sweep_due_allotments(runtime) == 1
        reset = await next_event(ws)
        assert kinds(reset) == [
            ("ALLOTMENT_EXPIRY", "SUBSCRIPTION", -997),
            ("ALLOTMENT_GRANT", "SUBSCRIPTION", 1000),
        ]
        assert [e["balanceAfter"] for e in reset["entries"]] == [200, 1200]
        assert reset["balance"]["subscriptionCredits"] == 1000
        assert reset["balance"]["periodStart"] == "2026-02-15T12:00:00+00:00"
        await nothing_arrives(ws)


async def test_a_reset_applied_by_a_balance_read_is_an_event_too(
    live: Live, account: NewAccount, clock: FrozenClock
) -> None:
    async with transport_ws(live.ws_url, account.token.secret) as ws:
        await subscribe(ws)
        await next_event(ws)
        clock.advance(timedelta(days=31))
        await live.gql(account.token.secret, "{ account { balance { total } } }")
        reset = await next_event(ws)
        assert [e["kind"] for e in reset["entries"]] == ["ALLOTMENT_EXPIRY", "ALLOTMENT_GRANT"]


async def test_entries_show_their_message_freshly_loaded_for_each_event(
    live: Live, account: NewAccount, inbox: Inbox
) -> None:
    token = account.token.secret
    async with transport_ws(live.ws_url, token) as ws:
        await subscribe(ws, WITH_MESSAGES)
        await next_event(ws)
        message_id = await live.send(token, inbox.id, "First")
        [entry] = (await next_event(ws))["entries"]
        assert entry["message"]["id"] == message_id
        assert entry["message"]["body"] == "First"
        # the carrier reports it failed: the refund's event shows the message as it is now
        await live.webhook("/webhooks/status", {
            "providerMessageId": await provider_id(live, token, message_id), "status": "failed",
        })  # fmt: skip
        [refund] = (await next_event(ws))["entries"]
        assert (refund["kind"], refund["credits"]) == ("REFUND", 1)
        assert (refund["message"]["id"], refund["message"]["status"]) == (message_id, "FAILED")
        await live.inbound(SHARED_NUMBER, "SM-in-2", body="Back")
        [entry] = (await next_event(ws))["entries"]
        assert (entry["message"]["direction"], entry["message"]["body"]) == ("INBOUND", "Back")


async def provider_id(live: Live, token: str, message_id: str) -> str:
    found = await live.gql(
        token, "{ account { messages(first: 1) { nodes { id providerMessageId } } } }"
    )
    [message] = found["account"]["messages"]["nodes"]
    assert message["id"] == message_id
    carrier_id: str = message["providerMessageId"]
    return carrier_id


async def test_the_legacy_graphql_ws_protocol_streams_events_and_keeps_alive(
    live: Live, account: NewAccount
) -> None:
    token = account.token.secret
    async with websockets.connect(live.ws_url, subprotocols=[LEGACY_WS]) as ws:
        init = {"authorization": f"Bearer {token}"}
        await send_json(ws, {"type": "connection_init", "payload": init})
        assert (await receive(ws))["type"] == "connection_ack"
        assert (await receive(ws))["type"] == "ka"
        await send_json(ws, {"id": "7", "type": "start", "payload": {"query": BALANCE_CHANGED}})
        first = await receive(ws)
        assert (first["type"], first["id"]) == ("data", "7")
        assert first["payload"]["data"]["balanceChanged"]["balance"]["total"] == 1000
        await live.gql(token, SET_PAYMENT_METHOD)
        await live.gql(token, BUY, key="legacy")
        bought = await receive(ws)
        assert kinds(bought["payload"]["data"]["balanceChanged"]) == [
            ("PURCHASE", "PURCHASED", 100)
        ]


# --- who sees what ------------------------------------------------------------------


async def test_each_account_sees_only_its_own_events(
    live: Live, account: NewAccount, inbox: Inbox, clock: FrozenClock
) -> None:
    other = await create_account(
        name="Globex", admin_name="Hank", admin_email="hank@globex.example", clock=clock
    )
    async with (
        transport_ws(live.ws_url, account.token.secret) as mine,
        transport_ws(live.ws_url, other.token.secret) as theirs,
    ):
        await subscribe(mine)
        await subscribe(theirs)
        await next_event(mine)
        await next_event(theirs)
        await live.send(account.token.secret, inbox.id)
        assert kinds(await next_event(mine)) == [("OUTBOUND_MESSAGE", "SUBSCRIPTION", -1)]
        await nothing_arrives(theirs)
        await live.gql(other.token.secret, SET_PAYMENT_METHOD)
        await live.gql(other.token.secret, BUY, key="globex")
        assert kinds(await next_event(theirs)) == [("PURCHASE", "PURCHASED", 100)]
        await nothing_arrives(mine)


async def test_a_websocket_reads_the_account_anew_for_each_operation(
    live: Live, account: NewAccount
) -> None:
    # given a connection authenticated before the account changes
    token = account.token.secret
    async with transport_ws(live.ws_url, token) as ws:
        await subscribe(ws, "{ account { name } }", op="before")
        before = await receive(ws)
        # when the account is renamed over HTTP
        await live.gql(token, UPDATE_ACCOUNT, input={"name": "Acme Renamed"})
        await subscribe(ws, "{ account { name } }", op="after")
        after = [m for m in [await receive(ws), await receive(ws)] if m["type"] == "next"]
    # then the connection's next operation sees the new name
    assert before["payload"]["data"] == {"account": {"name": "Acme"}}
    assert [m["payload"]["data"] for m in after] == [{"account": {"name": "Acme Renamed"}}]


async def test_a_member_sees_its_account_but_not_messages_of_inboxes_it_may_not_use(
    live: Live, api: Api, account: NewAccount, inbox: Inbox
) -> None:
    token = await member_token(api, account)
    personal = (await live.gql(token, "{ viewer { personalInbox { id } } }"))["viewer"]
    async with transport_ws(live.ws_url, token) as ws:
        await subscribe(ws, WITH_MESSAGES)
        assert (await next_event(ws))["balance"]["total"] == 1000
        # an admin's send from the shared inbox: the member sees the charge, not the message
        await live.send(account.token.secret, inbox.id, "Not yours")
        [entry] = (await next_event(ws))["entries"]
        assert (entry["kind"], entry["message"]) == ("OUTBOUND_MESSAGE", None)
        # its own send, from its personal inbox
        message_id = await live.send(token, int(personal["personalInbox"]["id"]), "Mine")
        [entry] = (await next_event(ws))["entries"]
        assert entry["message"]["id"] == message_id


async def test_a_member_subscribed_before_an_inbox_was_shared_with_it_sees_its_messages(
    live: Live, api: Api, account: NewAccount, inbox: Inbox
) -> None:
    token = await member_token(api, account)
    member_id = (await live.gql(token, "{ viewer { id } }"))["viewer"]["id"]
    async with transport_ws(live.ws_url, token) as ws:
        await subscribe(ws, WITH_MESSAGES)
        await next_event(ws)
        # given the member's view of the account, read with a message it may not see
        await live.send(account.token.secret, inbox.id, "Not yours")
        [entry] = (await next_event(ws))["entries"]
        assert entry["message"] is None
        # when an admin creates a shared inbox that lists the member, and sends from it
        made = await live.gql(account.token.secret, SHARED_WITH, member=member_id)
        shared_id = int(made["createInbox"]["inbox"]["id"])
        message_id = await live.send(account.token.secret, shared_id, "Now yours too")
        # then the member sees that message
        [entry] = (await next_event(ws))["entries"]
        assert entry["message"]["id"] == message_id


async def test_a_revoked_token_stops_at_once_and_its_subscriptions_close_4403(
    live: Live, account: NewAccount
) -> None:
    made = await live.gql(account.token.secret, CREATE_TOKEN, member=str(account.admin.id))
    tab = made["createApiToken"]
    async with transport_ws(live.ws_url, tab["token"]) as ws:
        await subscribe(ws)
        await next_event(ws)
        revoked_at = time.monotonic()
        await live.gql(account.token.secret, REVOKE, id=tab["tokenId"])
        # then the connection is closed at once: the revocation reaches the token watch
        # through the broker, without waiting for its next check
        assert await close_code(ws) == 4403
        assert time.monotonic() - revoked_at < 1
    # and the token opens nothing any more
    async with transport_ws(live.ws_url, None) as ws:
        init = {"authorization": f"Bearer {tab['token']}"}
        await send_json(ws, {"type": "connection_init", "payload": init})
        assert await close_code(ws) == 4403


@pytest.mark.parametrize("payload", [{}, {"authorization": "Bearer tly_wrong"}, {"token": "x"}])
async def test_a_connection_without_a_valid_token_is_closed_4403(
    live: Live, payload: dict[str, str]
) -> None:
    async with transport_ws(live.ws_url, None) as ws:
        await send_json(ws, {"type": "connection_init", "payload": payload})
        assert await close_code(ws) == 4403


async def test_subscribing_before_connection_init_is_closed_4401(live: Live) -> None:
    async with transport_ws(live.ws_url, None) as ws:
        await subscribe(ws)
        assert await close_code(ws) == 4401


@pytest.mark.parametrize("message", ['{"type": "connection_init", "payload": 7}', "not json"])
async def test_a_malformed_message_is_closed_4400(live: Live, message: str) -> None:
    async with transport_ws(live.ws_url, None) as ws:
        await ws.send(message)
        assert await close_code(ws) == 4400


async def test_a_second_connection_init_is_closed_4429(live: Live, account: NewAccount) -> None:
    async with transport_ws(live.ws_url, account.token.secret) as ws:
        init = {"authorization": f"Bearer {account.token.secret}"}
        await send_json(ws, {"type": "connection_init", "payload": init})
        assert await close_code(ws) == 4429


async def test_legacy_graphql_ws_refuses_a_bad_token_and_a_start_before_init(live: Live) -> None:
    async with websockets.connect(live.ws_url, subprotocols=[LEGACY_WS]) as ws:
        await send_json(ws, {"type": "start", "id": "1", "payload": {"query": BALANCE_CHANGED}})
        assert await close_code(ws) == 4401
    async with websockets.connect(live.ws_url, subprotocols=[LEGACY_WS]) as ws:
        init = {"authorization": "Bearer tly_wrong"}
        await send_json(ws, {"type": "connection_init", "payload": init})
        refusal = await receive(ws)
        assert refusal["type"] == "connection_error"
        assert refusal["payload"] == {"code": "UNAUTHENTICATED"}
        assert await close_code(ws) == 1011


# --- a slow client ------------------------------------------------------------------


def tiny_receive_buffer() -> socket.socket:
    """A client socket that takes little before the server's writes back up."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    return sock


async def test_a_client_that_stops_reading_holds_up_nobody(
    live: Live, account: NewAccount, runtime: Runtime
) -> None:
    token = account.token.secret
    sock = tiny_receive_buffer()
    port = urlsplit(live.ws_url).port
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    async with (
        transport_ws(live.ws_url, token) as fast,
        transport_ws(live.ws_url, token, sock=sock, max_queue=1, compression=None) as slow,
    ):
        await subscribe(fast)
        await subscribe(slow)
        start = (await next_event(fast))["balance"]
        await next_event(slow)
        # when far more events come than the slow client reads (it reads none now), in bursts
        # that a client keeping up takes in its stride
        count, burst = 1500, 30
        version = await current_version(account)
        for n in range(1, count + 1, burst):
            for m in range(n, n + burst):
                await runtime.broker.publish(synthetic(account, version + m, start["total"] + m))
            # then the fast client receives every one of them, in order
            for m in range(n, n + burst):
                assert (await next_event(fast))["balance"]["total"] == start["total"] + m
        # and the slow one, when it reads again, skipped a backlog but ends up current
        totals = [(await next_event(slow))["balance"]["total"]]
        while totals[-1] != start["total"] + count:
            totals.append((await next_event(slow))["balance"]["total"])
        assert len(totals) < count
        assert totals == sorted(totals)


async def current_version(account: NewAccount) -> int:
    row = await Account.get(id=account.account.id)
    return int(row.balance_version)


def synthetic(account: NewAccount, version: int, total: int) -> BalanceEvent:
    """An event of about 5 KB on the wire, so that a few MB of socket buffers fill up soon."""
    start = account.account.created_at
    balance = Balance(account.account.id, total, 0, start, start + timedelta(days=31), version)
    entry = LedgerEntry(
        id=version, account_id=account.account.id, kind=LedgerEntryKind.PURCHASE,
        bucket=CreditBucket.PURCHASED, credits=1, balance_after=total, amount_cents=2,
        message_id=None, period_index=0, created_at=start,
    )  # fmt: skip
    return BalanceEvent(balance=balance, entries=(entry,) * 40)


# --- the stream's order (services/live.py, with its broker) --------------------------


def change(account: NewAccount, version: int, total: int) -> BalanceEvent:
    start = account.account.created_at
    balance = Balance(account.account.id, total, 0, start, start + timedelta(days=31), version)
    return BalanceEvent(balance=balance, entries=())


async def stream_of(account: NewAccount, admin: Principal, runtime: Runtime) -> Any:
    stream = balance_changes(
        actor=admin,
        runtime=runtime,
    )
    first = await asyncio.wait_for(anext(stream), TIMEOUT)
    return stream, first.event.balance.version


async def versions(stream: Any, count: int) -> list[int]:
    return [
        (await asyncio.wait_for(anext(stream), TIMEOUT)).event.balance.version for _ in range(count)
    ]


async def test_early_events_wait_for_the_missing_version_and_old_ones_are_dropped(
    account: NewAccount, admin: Principal, runtime: Runtime
) -> None:
    stream, start = await stream_of(account, admin, runtime)
    for version in (start, start + 2, start + 3, start + 1, start + 2):
        await runtime.broker.publish(change(account, version, version))
    assert await versions(stream, 3) == [start + 1, start + 2, start + 3]
    await stream.aclose()


async def test_a_version_that_never_comes_is_replaced_by_the_balance_re_read(
    account: NewAccount, admin: Principal, runtime: Runtime, inbox: Inbox
) -> None:
    stream, start = await stream_of(account, admin, runtime)
    # when a change is committed but its event is lost, and the next one arrives
    await sent_directly(runtime, admin, inbox)  # announced: start + 1
    assert await versions(stream, 1) == [start + 1]
    await sent_directly(runtime, admin, inbox, broker=LocalBroker())  # start + 2, never announced
    await runtime.broker.publish(change(account, start + 3, 0))
    # then after a short wait the stream re-reads the balance and sends it without entries
    waited = time.monotonic()
    re_read = await asyncio.wait_for(anext(stream), TIMEOUT)
    assert HOLD_SECONDS <= time.monotonic() - waited < 2
    assert (re_read.event.balance.version, re_read.event.entries) == (start + 2, ())
    assert re_read.event.balance.total == 998
    # and the held event follows
    assert await versions(stream, 1) == [start + 3]
    await stream.aclose()


async def test_a_lag_marker_makes_the_stream_re_read_the_balance(
    account: NewAccount, admin: Principal, runtime: Runtime, inbox: Inbox
) -> None:
    stream, start = await stream_of(account, admin, runtime)
    await sent_directly(runtime, admin, inbox, broker=LocalBroker())  # unannounced
    assert isinstance(runtime.broker, LocalBroker)
    runtime.broker.lag_everyone()
    re_read = await asyncio.wait_for(anext(stream), TIMEOUT)
    assert (re_read.event.balance.version, re_read.event.entries) == (start + 1, ())
    await stream.aclose()


async def sent_directly(
    runtime: Runtime, actor: Principal, inbox: Inbox, broker: Any = None
) -> None:
    await send_message(
        actor=actor, inbox_id=inbox.id, to=CUSTOMER, body="Hi", idempotency_key=None,
        region="US", runtime=replace(runtime, broker=broker or runtime.broker),
    )  # fmt: skip


# --- shutdown (a real `tally serve`) ------------------------------------------------


async def start_serving(
    env: dict[str, str], port: int, cwd: Path, log: Path
) -> asyncio.subprocess.Process:
    """`tally serve` on a loopback port, its log in `log`, once it answers."""
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            TALLY, "serve", "--port", str(port), env=env, cwd=cwd,
            stdout=asyncio.subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
    async with httpx.AsyncClient() as http:
        for _ in range(150):
            try:
                await http.get(f"http://127.0.0.1:{port}/graphql", headers={"Accept": "text/html"})
                return process
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    process.kill()
    await process.wait()
    pytest.fail(f"tally serve did not start: {(await asyncio.to_thread(log.read_text))[-2000:]}")


@dataclass
class Call:
    started: float
    ended: float
    ok: bool


async def test_sigterm_closes_websockets_1012_and_finishes_sends_in_flight(
    server_database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "TALLY_DATABASE_URL": server_database_url}
    log = tmp_path / "serve.log"
    process = await start_serving(env, port, tmp_path, log)
    try:
        token = (await Server(f"http://127.0.0.1:{port}", env).new_account("Sigterm"))["token"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as http:
            live_server = Live(f"ws://127.0.0.1:{port}/graphql", http, "")
            made = await live_server.gql(token, CREATE_INBOX)
            inbox_id = int(made["createInbox"]["inbox"]["id"])
            calls: list[Call] = []

            async def sender() -> None:
                while True:
                    started = time.monotonic()
                    try:
                        await live_server.send(token, inbox_id)
                    except httpx.TransportError:
                        return  # refused: the server had stopped taking requests
                    calls.append(Call(started, time.monotonic(), True))

            async with transport_ws(live_server.ws_url, token) as ws:
                await subscribe(ws)
                await next_event(ws)
                senders = [asyncio.create_task(sender()) for _ in range(8)]
                await asyncio.sleep(0.5)
                # when the server is told to stop while sends are running
                signalled = time.monotonic()
                process.send_signal(signal.SIGTERM)
                # then the websocket gets a proper close frame: 1012, service restart
                assert await close_code(ws) == 1012
                await asyncio.wait_for(asyncio.gather(*senders), 15)
        # and the sends that were in flight completed with their answer
        assert [c for c in calls if c.started < signalled < c.ended]
        # and the server shut down cleanly (uvicorn then re-raises the SIGTERM it handled)
        assert await asyncio.wait_for(process.wait(), 15) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in await asyncio.to_thread(log.read_text)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# --- the executor ------------------------------------------------------------------------


def executor_for(document: str | DocumentNode) -> SubscriptionExecutor:
    parsed = parse(document) if isinstance(document, str) else document
    built = SubscriptionExecutor.build(schema._schema, parsed)
    assert isinstance(built, SubscriptionExecutor), built
    return built


def payload(account: NewAccount, version: int) -> SchemaBalanceEvent:
    return SchemaBalanceEvent.from_result(LiveEvent(synthetic(account, version, 5)))


async def execute_events(
    subscription: SubscriptionExecutor, account: NewAccount, versions: range = range(2, 6)
) -> list[tuple[PlainFieldsExecutor, ExecutionResult]]:
    """Each event's executor and result, as the subscription would run them, checked clean."""
    executed: list[tuple[PlainFieldsExecutor, ExecutionResult]] = []
    for version in versions:
        event = subscription.build_per_event_executor(payload(account, version))
        assert isinstance(event, PlainFieldsExecutor)
        result = event.execute_operation()
        if inspect.isawaitable(result):
            result = await result
        assert isinstance(result, ExecutionResult)
        assert result.errors is None
        executed.append((event, result))
    return executed


@pytest.mark.usefixtures("db")
async def test_subscribers_of_one_document_share_each_event_s_result(account: NewAccount) -> None:
    # (the parser cache hands every subscriber of one document text the same parsed document)
    document = parse(BALANCE_CHANGED)
    one, two = executor_for(document), executor_for(document)
    event = payload(account, 2)
    first = one.build_per_event_executor(event).execute_operation()
    assert isinstance(first, ExecutionResult)
    assert first.data is not None
    assert two.build_per_event_executor(event).execute_operation() is first
    assert first.data["balanceChanged"]["balance"]["total"] == 5
    # a selection that reads more than plain attributes is executed for each subscriber
    assert not selects_only_plain_fields(executor_for(WITH_MESSAGES))
    with_variables = (
        "subscription($x: Boolean = true) { balanceChanged { balance @include(if: $x) { total } } }"
    )
    assert not selects_only_plain_fields(executor_for(with_variables))
    fragments = """subscription { balanceChanged { ...Event } }
      fragment Event on BalanceEvent { balance { ... on CreditBalance { total } } }"""
    assert selects_only_plain_fields(executor_for(fragments))


@pytest.mark.usefixtures("db")
async def test_each_event_gets_a_memo_of_its_own(account: NewAccount) -> None:
    # graphql-core 3.3.2 shares one memo among a subscription's events, and it grows by an
    # entry per event; here the subscription's own memo stays empty whatever the events.
    subscription = executor_for(WITH_MESSAGES)
    await execute_events(subscription, account)
    assert subscription._relevant_sub_fields == {}
