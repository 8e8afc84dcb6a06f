"""A server killed with SIGKILL mid-stream loses nothing it acknowledged; the ledger stays whole."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live_server import TALLY, Server, free_port

SEND = """mutation($input: SendMessageInput!) {
  sendMessage(input: $input) { message { id } userErrors { code } } }"""
BUY = """mutation($input: BuyCreditsInput!) {
  buyCredits(input: $input) { entry { id } userErrors { code } } }"""
LEDGER = """query($after: String) { account {
  balance { subscriptionCredits purchasedCredits }
  ledger(first: 100, after: $after) {
    nodes { id bucket credits message { id } } pageInfo { hasNextPage endCursor } } } }"""
MESSAGES = """query($after: String) { account {
  messages(first: 100, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } } }"""


async def start(env: dict[str, str], port: int, cwd: Path) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        TALLY, "serve", "--port", str(port), env=env, cwd=cwd,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with httpx.AsyncClient() as http:
        for _ in range(150):
            try:
                await http.get(f"http://127.0.0.1:{port}/graphql", headers={"Accept": "text/html"})
                return process
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    pytest.fail("tally serve did not start")


async def call(http: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any]) -> Any:
    response = await http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()
    return response.json()


async def all_pages(
    http: httpx.AsyncClient, token: str, query: str, field: str
) -> tuple[Any, list]:
    nodes: list[Any] = []
    after = None
    while True:
        body = await call(http, token, query, {"after": after})
        account = body["data"]["account"]
        page = account[field]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return account, nodes
        after = page["pageInfo"]["endCursor"]


async def test_sigkill_mid_stream_loses_nothing_acknowledged(
    server_database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "TALLY_DATABASE_URL": server_database_url}
    server = Server(url=f"http://127.0.0.1:{port}", env=env)
    process = await start(env, port, tmp_path)
    created = await server.new_account("Crash")
    token = created["token"]
    acked_messages: set[str] = set()
    acked_entries: set[str] = set()
    enough = asyncio.Event()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        member = await call(
            http, token,
            """mutation { createMember(input: {name: "C", email: "c@crash.example",
                 personalPhoneNumber: "+1 415 555 0170"}) { member { personalInbox { id } } } }""",
            {},
        )  # fmt: skip
        inbox_id = member["data"]["createMember"]["member"]["personalInbox"]["id"]
        await call(
            http,
            token,
            'mutation { setPaymentMethod(input: {token: "tok_visa"}) { paymentMethod { last4 } } }',
            {},
        )

        async def worker(n: int) -> None:
            i = 0
            while True:
                i += 1
                try:
                    if i % 5 == 0:
                        body = await call(
                            http,
                            token,
                            BUY,
                            {"input": {"credits": 100, "idempotencyKey": f"b{n}-{i}"}},
                        )
                        entry = body["data"]["buyCredits"]["entry"]
                        if entry:
                            acked_entries.add(entry["id"])
                    else:
                        variables = {
                            "input": {
                                "inboxId": inbox_id,
                                "to": "+14155550123",
                                "body": f"hello {n} {i}",
                            }
                        }
                        body = await call(http, token, SEND, variables)
                        message = body["data"]["sendMessage"]["message"]
                        if message:
                            acked_messages.add(message["id"])
                            if len(acked_messages) >= 150:
                                enough.set()
                except (httpx.TransportError, httpx.HTTPStatusError):
                    return

        workers = [asyncio.create_task(worker(n)) for n in range(12)]
        await asyncio.wait_for(enough.wait(), 30)
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
        await asyncio.gather(*workers)
        assert len(acked_messages) >= 150

    restarted = await start(env, port, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            account, entries = await all_pages(http, token, LEDGER, "ledger")
            _, messages = await all_pages(http, token, MESSAGES, "messages")
    finally:
        restarted.terminate()
        await restarted.wait()
    stored_messages = {m["id"] for m in messages}
    assert acked_messages <= stored_messages
    assert acked_entries <= {e["id"] for e in entries}
    by_bucket = {"SUBSCRIPTION": 0, "PURCHASED": 0}
    for entry in entries:
        by_bucket[entry["bucket"]] += entry["credits"]
    balance = account["balance"]
    assert by_bucket == {
        "SUBSCRIPTION": balance["subscriptionCredits"],
        "PURCHASED": balance["purchasedCredits"],
    }
    charged = {e["message"]["id"] for e in entries if e["message"] is not None}
    assert charged == stored_messages
