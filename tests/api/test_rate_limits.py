"""Rate limits over real HTTP and websockets: per token, per IP, webhooks exempt (RULES.md
"Limits")."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette

from api import limits
from api.app import create_app
from api.client_address import trusted_networks
from api.ratelimit import Counter, MemoryCounter, RedisCounter, _name
from api.settings import Settings
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.runtime import Runtime
from tests.api.test_subscriptions import (
    LEGACY_WS,
    Live,
    next_event,
    receive,
    send_json,
    serving,
    subscribe,
    transport_ws,
)

VIEWER = {"query": "{ viewer { id } }"}
PER_TOKEN = 3
PER_IP = 2
REDIS_URL = os.environ.get("TALLY_TEST_REDIS_URL")


def limited(settings: Settings) -> Settings:
    return replace(settings, rate_limit_per_token=PER_TOKEN, rate_limit_per_ip=PER_IP)


def http_client(app: Starlette, ip: str = "10.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://tally.test")


@pytest.fixture
async def client(settings: Settings, runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(limited(settings), runtime=runtime, manage_database=False)
    async with http_client(app) as http:
        yield http


async def graphql(client: httpx.AsyncClient, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await client.post("/graphql", json=VIEWER, headers=headers)


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-content-type-options"] == "nosniff"
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "RATE_LIMITED"}


async def test_a_token_over_its_limit_gets_429_with_retry_after(
    client: httpx.AsyncClient, account: NewAccount, clock: FrozenClock
) -> None:
    # given a token that used its requests, 15 s into the window (START is on a minute)
    clock.advance(timedelta(seconds=15))
    for _ in range(PER_TOKEN):
        assert (await graphql(client, account.token.secret)).status_code == 200

    # when
    response = await graphql(client, account.token.secret)

    # then
    assert_rate_limited(response)
    assert response.headers["retry-after"] == "45"


async def test_the_next_window_lets_the_token_in_again(
    client: httpx.AsyncClient, account: NewAccount, clock: FrozenClock
) -> None:
    # given a token over its limit
    for _ in range(PER_TOKEN + 1):
        await graphql(client, account.token.secret)

    # when the window ends
    clock.advance(timedelta(seconds=60))
    response = await graphql(client, account.token.secret)

    # then
    assert response.status_code == 200, response.text
    assert response.json()["data"]["viewer"]["id"] == str(account.admin.id)


async def test_tokens_are_limited_apart(client: httpx.AsyncClient, account: NewAccount) -> None:
    # given one token over its limit
    for _ in range(PER_TOKEN + 1):
        await graphql(client, account.token.secret)

    # when another token asks (unknown tokens count too: no database read)
    response = await graphql(client, "another-token")

    # then
    assert response.status_code == 200, response.text


async def test_requests_without_a_token_are_limited_per_ip(
    client: httpx.AsyncClient, settings: Settings, runtime: Runtime
) -> None:
    # given an IP that used its anonymous requests
    for _ in range(PER_IP):
        assert (await graphql(client, None)).status_code == 200

    # when it and another IP ask again
    response = await graphql(client, None)
    app = create_app(limited(settings), runtime=runtime, manage_database=False)
    async with http_client(app, ip="10.0.0.2") as other:
        others = await graphql(other, None)

    # then
    assert_rate_limited(response)
    assert others.status_code == 200, others.text


async def anonymous(client: httpx.AsyncClient, forwarded_for: str) -> int:
    response = await client.post(
        "/graphql", json=VIEWER, headers={"X-Forwarded-For": forwarded_for}
    )
    return response.status_code


async def test_behind_a_trusted_proxy_each_forwarded_client_is_limited_apart(
    settings: Settings, runtime: Runtime
) -> None:
    # given a proxy at 10.0.0.9 that Tally trusts
    trusting = replace(limited(settings), trusted_proxies=trusted_networks("10.0.0.9"))
    app = create_app(trusting, runtime=runtime, manage_database=False)
    async with http_client(app, ip="10.0.0.9") as proxy:
        # when one client behind it uses its anonymous requests, and then another asks
        for _ in range(PER_IP):
            assert await anonymous(proxy, "203.0.113.7") == 200
        first_again = await anonymous(proxy, "203.0.113.7")
        second = await anonymous(proxy, "203.0.113.8")
    # then only the first is over its limit
    assert (first_again, second) == (429, 200)


async def test_a_forwarded_address_from_an_untrusted_peer_is_ignored(
    client: httpx.AsyncClient,
) -> None:
    # when a client rotates made-up X-Forwarded-For addresses
    statuses = [await anonymous(client, f"203.0.113.{n}") for n in range(PER_IP + 1)]
    # then they all count against its own address
    assert statuses[-1] == 429


async def test_rotating_tokens_meet_the_ip_ceiling(client: httpx.AsyncClient) -> None:
    # given an IP that sent 5x the token limit, each with a new made-up token
    for n in range(PER_TOKEN * 5):
        assert (await graphql(client, f"fake-{n}")).status_code == 200

    # when
    response = await graphql(client, "fake-new")

    # then
    assert_rate_limited(response)


async def test_signed_webhooks_are_not_limited(client: httpx.AsyncClient) -> None:
    # given more signed webhooks than an IP may send (unknown ids: a 404, but signed)
    body = b'{"providerMessageId": "p-1", "status": "delivered"}'
    signature = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    headers = {"X-Tally-Signature": signature, "Content-Type": "application/json"}

    # when
    statuses = {
        (await client.post("/webhooks/status", content=body, headers=headers)).status_code
        for _ in range(PER_IP * 3)
    }

    # then
    assert statuses == {404}


async def test_badly_signed_webhooks_count_against_the_ip(client: httpx.AsyncClient) -> None:
    # given an IP that sent badly signed webhooks up to its limit
    headers = {"X-Tally-Signature": "sha256=00", "Content-Type": "application/json"}
    for _ in range(PER_IP):
        response = await client.post("/webhooks/status", content=b"{}", headers=headers)
        assert response.status_code == 401

    # when it sends another, or an anonymous query
    webhook = await client.post("/webhooks/status", content=b"{}", headers=headers)
    query = await graphql(client, None)

    # then
    assert_rate_limited(webhook)
    assert_rate_limited(query)


async def test_requests_pass_when_redis_is_unreachable(
    settings: Settings, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    # given counters in a Redis nobody listens on
    unreachable = replace(limited(settings), broadcast_url="redis://127.0.0.1:1/0")
    app = create_app(unreachable, runtime=runtime, manage_database=False)

    # when more anonymous requests than the limit arrive
    async with http_client(app) as http:
        statuses = {(await graphql(http, None)).status_code for _ in range(PER_IP + 1)}
    await _counter_of(app).aclose()

    # then they fail open, and say so once
    assert statuses == {200}
    assert [r.message for r in caplog.records if "Rate limit" in r.message] == [
        "Rate limit counters unavailable: letting requests through"
    ]


@pytest.mark.skipif(REDIS_URL is None, reason="set TALLY_TEST_REDIS_URL to test shared counters")
async def test_websocket_operations_count_against_the_counters_shared_through_redis(
    settings: Settings,
    runtime: Runtime,
    account: NewAccount,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a server and a second app (another process) on Redis, in a window of their own
    assert REDIS_URL is not None
    clock.set(clock.now() + timedelta(minutes=int.from_bytes(os.urandom(3), "big")))
    shared = replace(limited(settings), broadcast_url=REDIS_URL)
    # The lifespan closes an app's counters; the test server runs without one.
    counters: list[RedisCounter] = []
    monkeypatch.setattr(
        limits, "RedisCounter", lambda url, **options: _kept(counters, RedisCounter(url, **options))
    )
    other = create_app(shared, runtime=runtime, manage_database=False)
    token = account.token.secret

    # when the token's operations go over a websocket to the server
    async with serving(shared, runtime) as server, transport_ws(server.ws_url, token) as ws:
        for n in range(PER_TOKEN):
            assert (await viewer_over(ws, str(n)))["type"] == "next"
            assert (await receive(ws))["type"] == "complete"
        # then the other process refuses the token's next request
        async with http_client(other, ip="127.0.0.1") as http:
            assert_rate_limited(await graphql(http, token))
    for counter in counters:
        await counter.aclose()


def _kept(kept: list[RedisCounter], counter: RedisCounter) -> RedisCounter:
    kept.append(counter)
    return counter


@pytest.mark.skipif(REDIS_URL is None, reason="set TALLY_TEST_REDIS_URL to test shared counters")
async def test_two_app_instances_share_counters_through_redis(
    settings: Settings, runtime: Runtime, account: NewAccount, clock: FrozenClock
) -> None:
    # given two apps (as two processes would be) on Redis, in a window of this test's own
    assert REDIS_URL is not None
    clock.set(clock.now() + timedelta(minutes=int.from_bytes(os.urandom(3), "big")))
    shared = replace(limited(settings), broadcast_url=REDIS_URL)
    apps = [create_app(shared, runtime=runtime, manage_database=False) for _ in range(2)]

    # when the token's requests are spread over both
    async with http_client(apps[0]) as first, http_client(apps[1]) as second:
        statuses = [
            (await graphql(http, account.token.secret)).status_code for http in [first, second] * 2
        ]
    for app in apps:
        await _counter_of(app).aclose()

    # then the fourth, over the limit of 3, is refused
    assert statuses == [200, 200, 200, 429]


def _counter_of(app: Starlette) -> Counter:
    [counter] = [m.kwargs["counter"] for m in app.user_middleware if "counter" in m.kwargs]
    assert isinstance(counter, MemoryCounter | RedisCounter)
    return counter


# --- websockets ---------------------------------------------------------------------------


@pytest.fixture
async def live(settings: Settings, runtime: Runtime) -> AsyncIterator[Live]:
    async with serving(limited(settings), runtime) as server:
        yield server


async def viewer_over(ws: websockets.ClientConnection, op: str) -> dict[str, Any]:
    """Send `{ viewer { id } }` over graphql-transport-ws; its first answer."""
    await send_json(ws, {"id": op, "type": "subscribe", "payload": VIEWER})
    return await receive(ws)


def assert_rate_limited_error(message: dict[str, Any], op: str, retry_after: int) -> None:
    assert (message["type"], message["id"]) == ("error", op), message
    [error] = message["payload"]
    assert error["message"] == f"Too many requests: try again in {retry_after} s."
    assert error["extensions"] == {"code": "RATE_LIMITED", "retryAfter": retry_after}


async def test_websocket_operations_over_the_token_limit_are_refused_and_the_socket_stays_open(
    live: Live, account: NewAccount, clock: FrozenClock
) -> None:
    clock.advance(timedelta(seconds=15))
    async with transport_ws(live.ws_url, account.token.secret) as ws:
        # given a connection that used its token's operations (a subscription among them)
        await subscribe(ws, op="live")
        await next_event(ws, op="live")
        for n in range(PER_TOKEN - 1):
            assert (await viewer_over(ws, str(n)))["type"] == "next"
            assert (await receive(ws))["type"] == "complete"

        # when it sends one more
        refused = await viewer_over(ws, "over")

        # then that one is refused with the code and the wait
        assert_rate_limited_error(refused, "over", retry_after=45)

        # and in the next window the same connection is served again
        clock.advance(timedelta(seconds=60))
        answer = await viewer_over(ws, "next-window")
        assert answer["payload"]["data"]["viewer"]["id"] == str(account.admin.id)


async def test_websocket_operations_and_http_requests_share_the_token_limit(
    live: Live, account: NewAccount
) -> None:
    token = account.token.secret
    headers = {"Authorization": f"Bearer {token}"}
    async with transport_ws(live.ws_url, token) as ws:
        # given a token that sent all but one of its requests over HTTP
        for _ in range(PER_TOKEN - 1):
            response = await live.http.post("/graphql", json=VIEWER, headers=headers)
            assert response.status_code == 200, response.text

        # when it sends two operations over a websocket, then an HTTP request
        assert (await viewer_over(ws, "1"))["type"] == "next"
        assert (await receive(ws))["type"] == "complete"
        refused = await viewer_over(ws, "2")
        response = await live.http.post("/graphql", json=VIEWER, headers=headers)

    # then the second operation and the request are over the one limit
    assert refused["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert_rate_limited(response)


async def test_legacy_graphql_ws_operations_over_the_limit_get_a_coded_error(
    live: Live, account: NewAccount
) -> None:
    init = {"authorization": f"Bearer {account.token.secret}"}
    async with websockets.connect(live.ws_url, subprotocols=[LEGACY_WS]) as ws:
        await send_json(ws, {"type": "connection_init", "payload": init})
        for n in range(PER_TOKEN + 1):
            start = {"query": "subscription { balanceChanged { balance { total } } }"}
            await send_json(ws, {"id": str(n), "type": "start", "payload": start})
        answers = [await receive(ws) for _ in range(PER_TOKEN + 3)]

    # the ack, a keep-alive, a first event per admitted operation, and one refusal
    [refused] = [m for m in answers if m["type"] == "error"]
    assert refused["id"] == str(PER_TOKEN)
    assert refused["payload"]["extensions"]["code"] == "RATE_LIMITED"
    assert refused["payload"]["extensions"]["retryAfter"] >= 1
    assert sorted(m["id"] for m in answers if m["type"] == "data") == ["0", "1", "2"]


def test_a_redis_namespace_keeps_deployments_counters_apart() -> None:
    production = _name("token:abc", 7)
    staging = _name("token:abc", 7, "staging")

    assert production == "tally:ratelimit:7:token:abc"
    assert staging == "tally:staging:ratelimit:7:token:abc"
    assert Settings.from_env({"TALLY_REDIS_NAMESPACE": "staging"}).redis_namespace == "staging"
    assert Settings.from_env({}).redis_namespace == ""
