from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from services import members as member_service
from services.accounts import NewAccount
from tests.api.test_subscriptions import (
    TRANSPORT_WS,
    Live,
    close_code,
    next_event,
    send_json,
    subscribe,
    transport_ws,
)

QUERY = {"query": "query Badge { account { name } }", "operationName": "Badge"}


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "tally.access"]


async def test_every_response_carries_a_request_id_and_one_json_log_line(
    client: httpx.AsyncClient, account: NewAccount, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Authorization": f"Bearer {account.token.secret}"}
    with caplog.at_level("INFO", logger="tally.access"):
        response = await client.post("/graphql", json=QUERY, headers=headers)
    request_id = response.headers["x-request-id"]
    [line] = access_lines(caplog)
    assert line["request_id"] == request_id
    assert (line["method"], line["path"], line["status"]) == ("POST", "/graphql", 200)
    assert (line["operation"], line["account_id"]) == ("Badge", account.account.id)
    assert isinstance(line["duration_ms"], float)


async def test_a_safe_request_id_from_the_client_is_kept_and_an_unsafe_one_replaced(
    client: httpx.AsyncClient,
) -> None:
    kept = await client.get("/healthz", headers={"X-Request-Id": "proxy-123.abc"})
    replaced = await client.get("/healthz", headers={"X-Request-Id": "evil\nheader" * 10})
    assert kept.headers["x-request-id"] == "proxy-123.abc"
    assert replaced.headers["x-request-id"] != "evil\nheader" * 10
    assert len(replaced.headers["x-request-id"]) == 32


async def test_an_unexpected_error_is_masked_and_carries_the_request_id(
    client: httpx.AsyncClient,
    account: NewAccount,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a service that fails in a way nobody planned for
    async def broken(*, account_id: int, member_id: int) -> None:
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setattr(member_service, "get_member", broken)
    headers = {"Authorization": f"Bearer {account.token.secret}"}
    # when a client asks
    with caplog.at_level("ERROR"):
        response = await client.post(
            "/graphql", json={"query": "{ viewer { name } }"}, headers=headers
        )
    # then it sees a generic error with the request id, and the log has the details
    [error] = response.json()["errors"]
    assert error["message"] == "Internal server error."
    assert error["extensions"] == {
        "code": "INTERNAL_SERVER_ERROR",
        "requestId": response.headers["x-request-id"],
    }
    assert "SELECT" not in response.text
    assert any(response.headers["x-request-id"] in r.getMessage() for r in caplog.records)


# --- websockets ---------------------------------------------------------------------------


async def websocket_line(caplog: pytest.LogCaptureFixture) -> dict[str, object]:
    """The websocket's line, written once the server is done with the closed connection."""
    for _ in range(500):
        lines = [line for line in access_lines(caplog) if line["method"] == "WEBSOCKET"]
        if lines:
            break
        await asyncio.sleep(0.01)
    [line] = lines
    assert isinstance(line.pop("duration_ms"), float)
    return line


async def test_a_websocket_writes_one_line_when_it_closes(
    live: Live, account: NewAccount, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"X-Request-Id": "ws-123"}
    with caplog.at_level("INFO", logger="tally.access"):
        # given a connection that runs two subscriptions, then closes (1000)
        async with transport_ws(
            live.ws_url, account.token.secret, additional_headers=headers
        ) as ws:
            for op in ("1", "2"):
                await subscribe(ws, op=op)
                await next_event(ws, op=op)
            assert ws.response is not None
            assert ws.response.headers["x-request-id"] == "ws-123"
        # then
        line = await websocket_line(caplog)
    assert line == {
        "request_id": "ws-123",
        "method": "WEBSOCKET",
        "path": "/graphql",
        "status": 101,
        "client": "127.0.0.1",
        "operations": 2,
        "close_code": 1000,
        "account_id": account.account.id,
    }


async def test_a_websocket_closed_by_the_server_logs_the_server_close_code(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="tally.access"):
        async with transport_ws(live.ws_url, None) as ws:
            await send_json(ws, {"type": "connection_init", "payload": {"authorization": "x"}})
            assert await close_code(ws) == 4403
        line = await websocket_line(caplog)
    assert (line["close_code"], line["operations"], line["account_id"]) == (4403, 0, None)


async def test_a_refused_handshake_logs_403(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    headers = {"Origin": "https://evil.example"}
    with caplog.at_level("INFO", logger="tally.access"):
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(
                live.ws_url, subprotocols=[TRANSPORT_WS], additional_headers=headers
            )
        line = await websocket_line(caplog)
    assert line["status"] == 403
