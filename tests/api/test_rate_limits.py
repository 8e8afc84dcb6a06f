"""Rate limits over real HTTP: per token, per IP, webhooks exempt (RULES.md "Limits")."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette

from api.app import create_app
from api.ratelimit import Counter, MemoryCounter, RedisCounter
from api.runtime import Runtime
from api.settings import Settings
from services.accounts import NewAccount
from services.clock import FrozenClock

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
