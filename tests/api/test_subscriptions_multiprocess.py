"""balanceChanged across `tally serve` processes: PostgreSQL, and Redis between them.

These need TALLY_TEST_DATABASE_URL (PostgreSQL) and TALLY_TEST_REDIS_URL, as .ci/run
sets them; without them they skip. With them, a server that cannot be reached fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from tests.api.test_subscriptions import (
    BUY,
    CREATE_TOKEN,
    REVOKE,
    SET_PAYMENT_METHOD,
    Live,
    kinds,
    next_event,
    start_serving,
    subscribe,
    transport_ws,
)
from tests.conftest import ON_POSTGRES
from tests.live_server import Server, free_port

REDIS_URL = os.environ.get("TALLY_TEST_REDIS_URL", "")
pytestmark = pytest.mark.skipif(
    not (REDIS_URL and ON_POSTGRES),
    reason="needs TALLY_TEST_DATABASE_URL=postgres://… and TALLY_TEST_REDIS_URL (as .ci/run sets)",
)
VIEWER = "{ viewer { id } }"
BALANCE = "{ account { balance { total } } }"
KINDS = "{ account { ledger(first: 10) { nodes { kind } } } }"
RECOVERY_SECONDS = 20  # the broker retries Redis after 0.1, 0.5, 1, 2, then every 5 s


@contextlib.asynccontextmanager
async def two_servers(
    database_url: str, broadcast_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Server, Server]]:
    """Two `tally serve` processes on one database, fanning events out through Redis."""
    env = {**os.environ, "TALLY_DATABASE_URL": database_url, "TALLY_BROADCAST_URL": broadcast_url}
    processes = []
    try:
        servers = []
        for name in ("a", "b"):
            port = free_port()
            (tmp_path / name).mkdir()
            processes.append(
                await start_serving(env, port, tmp_path / name, tmp_path / f"{name}.log")
            )
            servers.append(Server(f"http://127.0.0.1:{port}", env))
        yield servers[0], servers[1]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 15)


@contextlib.asynccontextmanager
async def client(server: Server) -> AsyncIterator[Live]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield Live(server.url.replace("http", "ws") + "/graphql", http, "")


async def buy(server: Live, token: str, key: str) -> None:
    assert (await server.gql(token, BUY, key=key))["buyCredits"]["userErrors"] == []


async def test_a_change_through_one_process_reaches_a_subscriber_of_the_other(
    server_database_url: str, tmp_path: Path
) -> None:
    await redis_answers(REDIS_URL)
    async with two_servers(server_database_url, REDIS_URL, tmp_path) as (one, two):
        token = (await one.new_account("Fanout"))["token"]
        async with client(one) as first, client(two) as second:
            async with transport_ws(first.ws_url, token) as ws:
                await subscribe(ws)
                assert (await next_event(ws))["balance"]["total"] == 1000
                await second.gql(token, SET_PAYMENT_METHOD)
                await buy(second, token, "through-two")
                bought = await next_event(ws)
                assert kinds(bought) == [("PURCHASE", "PURCHASED", 100)]
                assert bought["balance"]["total"] == 1100


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisProcess]:
    server = RedisProcess(free_port(), tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class RedisProcess:
    """A redis-server of this test's own, that it may kill and start again on one port."""

    def __init__(self, port: int, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed, but TALLY_TEST_REDIS_URL is set")
        self.binary, self.port, self.folder = binary, port, folder
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.folder),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await redis_answers(self.url)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await asyncio.wait_for(self.process.wait(), 10)


async def redis_answers(url: str) -> None:
    connection = aioredis.from_url(url)
    try:
        for _ in range(50):
            with contextlib.suppress(OSError, aioredis.ConnectionError):
                if await connection.ping():
                    return
            await asyncio.sleep(0.1)
        pytest.fail(f"Redis at {url} does not answer")
    finally:
        await connection.aclose()


async def test_subscribers_recover_when_redis_restarts(
    server_database_url: str, tmp_path: Path, private_redis: RedisProcess
) -> None:
    async with two_servers(server_database_url, private_redis.url, tmp_path) as (one, two):
        token = (await one.new_account("Restart"))["token"]
        async with client(one) as first, client(two) as second:
            await second.gql(token, SET_PAYMENT_METHOD)
            async with transport_ws(first.ws_url, token) as ws:
                await subscribe(ws)
                await next_event(ws)
                await buy(second, token, "before")
                assert (await next_event(ws))["balance"]["total"] == 1100
                # when Redis dies, a change is made meanwhile, and Redis comes back
                await private_redis.stop()
                await buy(second, token, "while-redis-is-down")
                await private_redis.start()
                # then the subscriber gets the balance re-read (no entries), missing nothing
                fresh = await next_event(ws, seconds=RECOVERY_SECONDS)
                assert (fresh["balance"]["total"], fresh["entries"]) == (1200, [])
                # and later changes come with their entries again
                await buy(second, token, "after")
                after = await next_event(ws)
                assert kinds(after) == [("PURCHASE", "PURCHASED", 100)]
                assert after["balance"]["total"] == 1300


async def error_code(server: Live, token: str, query: str) -> str | None:
    response = await server.http.post(
        "/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}
    )
    errors = response.json().get("errors") or [{}]
    code: str | None = errors[0].get("extensions", {}).get("code")
    return code


async def test_a_token_revoked_through_one_process_is_refused_by_the_other_at_once(
    server_database_url: str, tmp_path: Path
) -> None:
    await redis_answers(REDIS_URL)
    async with two_servers(server_database_url, REDIS_URL, tmp_path) as (one, two):
        created = await one.new_account("Revoke")
        async with client(one) as first, client(two) as second:
            made = await first.gql(created["token"], CREATE_TOKEN, member=created["memberId"])
            tab = made["createApiToken"]
            # given the second process has the token cached from a request it answered
            assert await error_code(second, tab["token"], VIEWER) is None
            # when the first process revokes it
            await first.gql(created["token"], REVOKE, id=tab["tokenId"])
            # then the second refuses the token's very next request
            assert await error_code(second, tab["token"], VIEWER) == "UNAUTHENTICATED"


async def test_one_grant_per_month_with_two_processes_racing_for_it(
    server_database_url: str, tmp_path: Path
) -> None:
    await redis_answers(REDIS_URL)
    async with two_servers(server_database_url, REDIS_URL, tmp_path) as (one, two):
        created = await one.new_account("Month")
        # given an account whose second subscription month started while nobody looked
        connection = await asyncpg.connect(
            server_database_url.replace("postgres://", "postgresql://", 1)
        )
        try:
            await connection.execute(
                "UPDATE account SET created_at = created_at - interval '40 days' WHERE id = $1",
                int(created["accountId"]),
            )
        finally:
            await connection.close()
        # when both processes read the balance many times at once
        async with client(one) as first, client(two) as second:
            reads = [
                server.gql(created["token"], BALANCE)
                for _ in range(20)
                for server in (first, second)
            ]
            totals = {r["account"]["balance"]["total"] for r in await asyncio.gather(*reads)}
            # then the month was granted exactly once: one expiry and one grant
            ledger = await first.gql(created["token"], KINDS)
        kinds_seen = [node["kind"] for node in ledger["account"]["ledger"]["nodes"]]
        assert kinds_seen == ["ALLOTMENT_GRANT", "ALLOTMENT_EXPIRY", "ALLOTMENT_GRANT"]
        assert totals == {1000}
