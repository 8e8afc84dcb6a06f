"""Hostile websocket traffic against a real server: garbage, oversized messages, floods.

Every case ends the way its protocol says (graphql-transport-ws: 4400, 4401, 4429;
the legacy graphql-ws: a `connection_error`), never with a server traceback (1011).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from api.graphql import MAX_OPERATION_ID_LENGTH, MAX_OPERATIONS_PER_CONNECTION
from api.settings import Settings
from models import Inbox, LedgerEntry
from services.accounts import NewAccount
from services.runtime import Runtime
from tests.api.test_subscriptions import (
    BALANCE_CHANGED,
    CUSTOMER,
    LEGACY_WS,
    SEND,
    TIMEOUT,
    Live,
    close_code,
    next_event,
    receive,
    send_json,
    serving,
    subscribe,
    transport_ws,
)

ONE_MIB = 1024 * 1024
FLOOD = 10_000
# Sends completed 0, 0.1, 0.2 ... 12 ms after they start: one of them is bound to be in
# the middle of its transaction's start.
CANCELLED_SENDS = 120
CANCEL_STEP_SECONDS = 0.0001
BALANCE = "{ account { balance { total } } }"


@pytest.fixture
async def live(settings: Settings, runtime: Runtime) -> AsyncIterator[Live]:
    # A flood of 10,000 operations must meet the per-connection cap, not the rate limit.
    async with serving(replace(settings, rate_limit_per_token=2 * FLOOD), runtime) as server:
        yield server


@pytest.fixture
def server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    """Errors the server logged (uvicorn's own loggers do not reach the root logger)."""
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.addHandler(caplog.handler)
    try:
        yield lambda: [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        uvicorn_log.removeHandler(caplog.handler)


def operation(op_id: object, query: object = BALANCE_CHANGED) -> str:
    return json.dumps({"id": op_id, "type": "subscribe", "payload": {"query": query}})


GARBAGE_BEFORE_INIT = {
    "not-json": "not json",
    "a-json-array": "[1, 2]",
    "a-json-string": '"connection_init"',
    "null": "null",
    "no-type": "{}",
    "a-type-that-is-not-a-string": '{"type": ["connection_init"]}',
    "an-unknown-type": '{"type": "hello"}',
}
GARBAGE_AFTER_INIT = {
    "a-huge-id": operation("x" * (MAX_OPERATION_ID_LENGTH + 1)),
    "an-id-that-is-a-list": operation(["1"]),
    "an-id-that-is-a-number": operation(1),
    "no-payload": '{"id": "1", "type": "subscribe"}',
    "a-query-that-is-not-a-string": operation("1", query={"q": 1}),
    "variables-that-are-a-list": json.dumps(
        {"id": "1", "type": "subscribe", "payload": {"query": "{ viewer { id } }", "variables": []}}
    ),
    "a-complete-with-a-list-id": '{"id": [], "type": "complete"}',
}


@pytest.mark.parametrize("message", GARBAGE_BEFORE_INIT.values(), ids=GARBAGE_BEFORE_INIT.keys())
async def test_garbage_on_graphql_transport_ws_closes_4400(
    live: Live, message: str, server_errors: Callable[[], list[str]]
) -> None:
    async with transport_ws(live.ws_url, None) as ws:
        await ws.send(message)
        assert await close_code(ws) == 4400
    assert server_errors() == []


@pytest.mark.parametrize("message", GARBAGE_AFTER_INIT.values(), ids=GARBAGE_AFTER_INIT.keys())
async def test_malformed_operations_on_graphql_transport_ws_close_4400(
    live: Live, account: NewAccount, message: str, server_errors: Callable[[], list[str]]
) -> None:
    async with transport_ws(live.ws_url, account.token.secret) as ws:
        await ws.send(message)
        assert await close_code(ws) == 4400
    assert server_errors() == []


async def test_a_binary_message_on_graphql_transport_ws_closes_4400(
    live: Live, server_errors: Callable[[], list[str]]
) -> None:
    async with transport_ws(live.ws_url, None) as ws:
        await ws.send(b'{"type": "connection_init"}')
        assert await close_code(ws) == 4400
    assert server_errors() == []


async def test_an_operation_id_of_the_maximum_length_is_used(
    live: Live, account: NewAccount
) -> None:
    op_id = "x" * MAX_OPERATION_ID_LENGTH
    async with transport_ws(live.ws_url, account.token.secret) as ws:
        await subscribe(ws, op=op_id)
        assert (await next_event(ws, op=op_id))["balance"]["total"] == 1000


async def test_the_server_sends_text_frames_that_browsers_parse(
    live: Live, account: NewAccount
) -> None:
    # Browsers' graphql-ws clients JSON.parse each frame's text: a binary frame arrives as
    # a Blob and breaks them.
    async with transport_ws(live.ws_url, None) as ws:
        init = {"authorization": f"Bearer {account.token.secret}"}
        await send_json(ws, {"type": "connection_init", "payload": init})
        ack = await asyncio.wait_for(ws.recv(), TIMEOUT)
        await subscribe(ws, op="1")
        event = await asyncio.wait_for(ws.recv(), TIMEOUT)

    assert isinstance(ack, str)
    assert isinstance(event, str)
    assert json.loads(event)["payload"]["data"]["balanceChanged"]["balance"]["total"] == 1000


# --- the legacy protocol -----------------------------------------------------------------


async def legacy_ws(url: str) -> ClientConnection:
    return await websockets.connect(url, subprotocols=[LEGACY_WS], open_timeout=TIMEOUT)


async def legacy_receive(ws: ClientConnection) -> dict[str, Any]:
    """The next message other than the keep-alive "ka" (sent at once after the ack)."""
    while (message := await receive(ws))["type"] == "ka":
        pass
    return message


async def legacy_init(ws: ClientConnection, token: str) -> None:
    await send_json(
        ws, {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    )
    assert (await legacy_receive(ws))["type"] == "connection_ack"


LEGACY_GARBAGE = {
    **{key: GARBAGE_BEFORE_INIT[key] for key in ("a-json-array", "null", "no-type")},
    "an-unknown-type": GARBAGE_BEFORE_INIT["an-unknown-type"],
    "a-huge-id": json.dumps({"id": "x" * 1000, "type": "start", "payload": {"query": "{ a }"}}),
    "a-stop-with-an-object-id": '{"id": {}, "type": "stop"}',
}


@pytest.mark.parametrize("message", LEGACY_GARBAGE.values(), ids=LEGACY_GARBAGE.keys())
async def test_garbage_on_legacy_graphql_ws_is_a_connection_error_and_the_connection_goes_on(
    live: Live, account: NewAccount, message: str, server_errors: Callable[[], list[str]]
) -> None:
    async with await legacy_ws(live.ws_url) as ws:
        await legacy_init(ws, account.token.secret)
        await ws.send(message)
        answer = await legacy_receive(ws)
        assert answer["type"] == "connection_error", answer
        assert answer["payload"]["message"]
        # the connection still works
        await send_json(ws, {"id": "1", "type": "start", "payload": {"query": BALANCE_CHANGED}})
        data = await legacy_receive(ws)
        assert data["type"] == "data", data
        assert data["payload"]["data"]["balanceChanged"]["balance"]["total"] == 1000
    assert server_errors() == []


async def test_text_that_is_not_json_on_legacy_graphql_ws_is_ignored(
    live: Live, account: NewAccount
) -> None:
    async with await legacy_ws(live.ws_url) as ws:
        await ws.send("not json")
        await legacy_init(ws, account.token.secret)


async def test_a_binary_message_on_legacy_graphql_ws_closes_1002(live: Live) -> None:
    async with await legacy_ws(live.ws_url) as ws:
        await ws.send(b"\x00\x01")
        assert await close_code(ws) == 1002


async def test_a_second_connection_init_on_legacy_graphql_ws_closes_4429(
    live: Live, account: NewAccount
) -> None:
    async with await legacy_ws(live.ws_url) as ws:
        await legacy_init(ws, account.token.secret)
        init = {"authorization": f"Bearer {account.token.secret}"}
        await send_json(ws, {"type": "connection_init", "payload": init})
        assert (await legacy_receive(ws))["type"] == "connection_error"
        assert await close_code(ws) == 4429


# --- message size ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(" " * (ONE_MIB + 1), id="text"),
        pytest.param(b" " * (ONE_MIB + 1), id="binary"),
        # fewer characters than the limit, but more bytes of UTF-8
        pytest.param("é" * (ONE_MIB // 2 + 1), id="multibyte-text"),
    ],
)
async def test_a_message_over_1_mib_closes_1009(
    live: Live, account: NewAccount, message: str | bytes
) -> None:
    # given the server uvicorn's default 16 MiB frames: the app enforces the limit itself
    async with transport_ws(live.ws_url, account.token.secret, max_size=None) as ws:
        await ws.send(message)
        assert await close_code(ws) == 1009


async def test_a_message_of_1_mib_is_read(live: Live, account: NewAccount) -> None:
    padded = operation("1").ljust(ONE_MIB)
    async with transport_ws(live.ws_url, account.token.secret) as ws:
        await ws.send(padded)
        assert (await next_event(ws))["balance"]["total"] == 1000


# --- a flood of operations ---------------------------------------------------------------


async def collect(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """The next `count` messages from the server."""
    return [await receive(ws, TIMEOUT * 4) for _ in range(count)]


async def test_10000_subscriptions_on_one_connection_meet_the_cap_of_live_operations(
    live: Live, account: NewAccount, server_errors: Callable[[], list[str]]
) -> None:
    token = account.token.secret
    async with transport_ws(live.ws_url, token, max_queue=None) as ws:
        # when a client sends 10,000 subscriptions at once, reading as it goes
        replies = asyncio.create_task(collect(ws, FLOOD))
        for n in range(FLOOD):
            await ws.send(operation(str(n)))
        answers = await replies

        # then the first 100 run (each gets its first event) and every other is refused
        events = {m["id"] for m in answers if m["type"] == "next"}
        refused = [m for m in answers if m["type"] == "error"]
        assert events == {str(n) for n in range(MAX_OPERATIONS_PER_CONNECTION)}
        assert len(refused) == FLOOD - MAX_OPERATIONS_PER_CONNECTION
        [error] = refused[0]["payload"]
        assert error["extensions"] == {
            "code": "TOO_MANY_OPERATIONS",
            "maximum": MAX_OPERATIONS_PER_CONNECTION,
        }

        # and the server stays responsive: another client is served at once
        async with transport_ws(live.ws_url, token) as other:
            await subscribe(other)
            assert (await next_event(other))["balance"]["total"] == 1000
        response = await live.http.post(
            "/graphql",
            json={"query": "{ viewer { id } }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.json()["data"]["viewer"]["id"] == str(account.admin.id)

        # and a completed operation frees its place for a new one
        await send_json(ws, {"id": "0", "type": "complete"})
        await subscribe(ws, op="again")
        assert (await next_event(ws, op="again"))["balance"]["total"] == 1000
    assert server_errors() == []


async def test_mutations_completed_while_they_run_leave_the_server_serving(
    live: Live, account: NewAccount, inbox: Inbox
) -> None:
    # given a client that starts sends and completes each soon after, so that the server
    # cancels them at whatever point they have reached, a transaction's start included
    # (on SQLite that used to stop every later write; tests/services/test_cancellation.py
    # cancels at every moment of the start on both databases)
    token = account.token.secret
    variables = {"input": {"inboxId": str(inbox.id), "to": CUSTOMER, "body": "Hi"}}
    async with transport_ws(live.ws_url, token) as ws:
        for n in range(CANCELLED_SENDS):
            payload = {"query": SEND, "variables": variables}
            await send_json(ws, {"id": str(n), "type": "subscribe", "payload": payload})
            await asyncio.sleep(n * CANCEL_STEP_SECONDS)
            await send_json(ws, {"id": str(n), "type": "complete"})
    # then the server still charges a send at once, and the ledger adds up
    await asyncio.wait_for(live.send(token, inbox.id), TIMEOUT)
    # (every entry: sends completed once queued still commit, so there may be over a page)
    found = await live.gql(token, BALANCE)
    entries = await LedgerEntry.filter(account_id=account.account.id)
    assert found["account"]["balance"]["total"] == sum(e.credits for e in entries)
