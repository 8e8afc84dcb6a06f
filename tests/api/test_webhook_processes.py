"""Outgoing webhooks from real `tally serve` processes: the outbox survives SIGKILL, and
two processes on PostgreSQL + Redis deliver each event once. Receivers are on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.receiver import Receiver, receiving
from tests.api.test_subscriptions import start_serving
from tests.api.test_subscriptions_multiprocess import REDIS_URL, redis_answers
from tests.conftest import ON_POSTGRES
from tests.live_server import Server, free_port

SET_ALERTS = """mutation($t: [Int!]!) { setBalanceAlerts(input: {thresholds: $t}) {
  userErrors { code } } }"""
CREATE = """mutation($url: String!) { createWebhookEndpoint(input: {url: $url}) {
  endpoint { id } secret userErrors { code } } }"""
CREATE_INBOX = """mutation($number: String!) { createInbox(input: {name: "Desk",
  phoneNumber: $number}) { inbox { id } userErrors { code } } }"""
SEND = """mutation($inbox: ID!) { sendMessage(input: {inboxId: $inbox, to: "+14155550123",
  body: "Hi"}) { message { id } userErrors { code } } }"""
DELIVERIES = """{ account { webhookEndpoints { deliveries(first: 100) {
  nodes { eventId status attempts lastError } } } } }"""


async def gql(server: Server, token: str, query: str, **variables: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            server.url + "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    answer: dict[str, Any] = body["data"]
    return answer


async def deliveries(server: Server, token: str) -> list[dict[str, Any]]:
    endpoints = (await gql(server, token, DELIVERIES))["account"]["webhookEndpoints"]
    found: list[dict[str, Any]] = endpoints[0]["deliveries"]["nodes"]
    return found


@contextlib.asynccontextmanager
async def serving(env: dict[str, str], tmp_path: Path, name: str) -> AsyncIterator[Server]:
    port = free_port()
    (tmp_path / name).mkdir()
    process = await start_serving(env, port, tmp_path / name, tmp_path / f"{name}.log")
    try:
        yield Server(f"http://127.0.0.1:{port}", env)
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 15)


async def until(check: Any, seconds: float = 20.0) -> None:
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 - the state is in another process
            await asyncio.sleep(0.05)


async def test_a_committed_notice_survives_sigkill_and_arrives_once_from_the_next_server(
    server_database_url: str, tmp_path: Path
) -> None:
    # given a server whose receiver is down, retrying every 2 s
    env = {
        **os.environ,
        "TALLY_DATABASE_URL": server_database_url,
        "TALLY_WEBHOOK_ALLOW_PRIVATE": "1",
        "TALLY_WEBHOOK_RETRY_SCHEDULE": ",".join(["2"] * 20),
    }
    receiver_port = free_port()
    url = f"http://127.0.0.1:{receiver_port}/hook"
    port = free_port()
    (tmp_path / "first").mkdir()
    first = await start_serving(env, port, tmp_path / "first", tmp_path / "first.log")
    server = Server(f"http://127.0.0.1:{port}", env)
    try:
        token = (await server.new_account("Durable"))["token"]
        inbox = (await gql(server, token, CREATE_INBOX, number="+14155550178"))["createInbox"][
            "inbox"
        ]["id"]
        await gql(server, token, CREATE, url=url)
        await gql(server, token, SET_ALERTS, t=[1000])
        # when a notice is committed, its first attempt fails, and the server is killed
        assert (await gql(server, token, SEND, inbox=inbox))["sendMessage"]["userErrors"] == []

        async def first_attempt_failed() -> bool:
            return [d["attempts"] for d in await deliveries(server, token)] == [1]

        await until(first_attempt_failed)
        os.kill(first.pid, signal.SIGKILL)
        await first.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    [recorded] = await _read_after_restart(env, tmp_path, token, receiver_port)
    # then the event arrived once, with the id the delivery recorded
    assert recorded["status"] == "SUCCEEDED"


async def _read_after_restart(
    env: dict[str, str], tmp_path: Path, token: str, receiver_port: int
) -> list[dict[str, Any]]:
    async with serving(env, tmp_path, "second") as server:
        async with receiving(port=receiver_port) as receiver:
            [delivered] = await receiver.wait_for(1, seconds=20)

            async def succeeded() -> bool:
                return [d["status"] for d in await deliveries(server, token)] == ["SUCCEEDED"]

            await until(succeeded)
            await asyncio.sleep(1)  # nothing more comes
            assert len(receiver.received) == 1
        found = await deliveries(server, token)
    assert delivered.json["id"] == found[0]["eventId"]
    assert found[0]["attempts"] >= 2
    return found


@pytest.mark.skipif(
    not (REDIS_URL and ON_POSTGRES),
    reason="needs TALLY_TEST_DATABASE_URL=postgres://… and TALLY_TEST_REDIS_URL (as .ci/run sets)",
)
async def test_two_processes_deliver_each_event_once(
    server_database_url: str, tmp_path: Path
) -> None:
    await redis_answers(REDIS_URL)
    env = {
        **os.environ,
        "TALLY_DATABASE_URL": server_database_url,
        "TALLY_BROADCAST_URL": REDIS_URL,
        "TALLY_WEBHOOK_ALLOW_PRIVATE": "1",
    }
    async with (
        receiving(Receiver()) as receiver,
        serving(env, tmp_path, "a") as one,
        serving(env, tmp_path, "b") as two,
    ):
        token = (await one.new_account("Twice"))["token"]
        inbox = (await gql(one, token, CREATE_INBOX, number="+14155550179"))["createInbox"][
            "inbox"
        ]["id"]
        await gql(one, token, CREATE, url=receiver.url)
        # when 20 notices are raised, half through each process, one after the other
        for n in range(20):
            server = (one, two)[n % 2]
            await gql(server, token, SET_ALERTS, t=[1000 - n])  # armed at the total
            await gql(server, token, SEND, inbox=inbox)
        await receiver.wait_for(20, seconds=20)

        async def all_succeeded() -> bool:
            found = await deliveries(two, token)
            return len(found) == 20 and {d["status"] for d in found} == {"SUCCEEDED"}

        await until(all_succeeded)
        await asyncio.sleep(1.5)  # past both processes' polls: nothing more comes
        # then each event arrived once
        ids = Counter(d.json["id"] for d in receiver.received)
        assert len(ids) == 20
        assert set(ids.values()) == {1}
        assert {d["attempts"] for d in await deliveries(one, token)} == {1}
