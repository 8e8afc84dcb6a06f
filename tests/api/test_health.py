"""/healthz and /readyz over real HTTP: no auth, no rate limit, 503 naming the failed check."""

from __future__ import annotations

import os
from dataclasses import replace

import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from services.runtime import Runtime

REDIS_URL = os.environ.get("TALLY_TEST_REDIS_URL")


async def get(settings: Settings, runtime: Runtime, path: str, times: int = 1) -> httpx.Response:
    app = create_app(settings, runtime=runtime, manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
        for _ in range(times):
            response = await http.get(path)
    return response


async def test_healthz_is_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


async def test_health_is_not_rate_limited(settings: Settings, runtime: Runtime) -> None:
    # given an app that allows one anonymous request a minute
    strict = replace(settings, rate_limit_per_ip=1, rate_limit_per_token=1)

    # when probes keep coming
    response = await get(strict, runtime, "/readyz", times=5)

    # then
    assert response.status_code == 200, response.text


async def test_readyz_is_503_when_redis_is_unreachable(
    settings: Settings, runtime: Runtime
) -> None:
    # given a broadcaster URL nobody listens on
    unreachable = replace(settings, broadcast_url="redis://127.0.0.1:1/0")

    # when
    response = await get(unreachable, runtime, "/readyz")

    # then
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "failed"},
    }


@pytest.mark.skipif(REDIS_URL is None, reason="set TALLY_TEST_REDIS_URL to check a live Redis")
async def test_readyz_pings_redis(settings: Settings, runtime: Runtime) -> None:
    assert REDIS_URL is not None
    response = await get(replace(settings, broadcast_url=REDIS_URL), runtime, "/readyz")

    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}
