"""Errors while a subscription runs reach the client coded, and masked when unexpected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from models import Inbox
from services import history
from services import live as live_stream
from services.accounts import NewAccount
from services.errors import NotFound
from tests.api.test_subscriptions import (
    LEGACY_WS,
    WITH_MESSAGES,
    Live,
    next_event,
    receive,
    send_json,
    subscribe,
    transport_ws,
)

REQUEST_ID = "ws-request-1"
SECRET = "SELECT secret FROM ledger_entry"


def failing_stream(error: Exception) -> Any:
    async def balance_changes(**_: object) -> AsyncIterator[live_stream.LiveEvent]:
        raise error
        yield  # an async generator, as the real one is

    return balance_changes


async def first_message(live: Live, token: str) -> tuple[dict[str, Any], str]:
    """The first answer to a balanceChanged subscription, and the connection's request id."""
    headers = {"X-Request-Id": REQUEST_ID}
    async with transport_ws(live.ws_url, token, additional_headers=headers) as ws:
        await subscribe(ws)
        message = await receive(ws)
        assert ws.response is not None
        return message, ws.response.headers["x-request-id"]


async def test_an_unexpected_error_in_a_subscription_is_masked_with_the_request_id(
    live: Live,
    account: NewAccount,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a subscription whose source fails in a way nobody planned for
    monkeypatch.setattr(live_stream, "balance_changes", failing_stream(RuntimeError(SECRET)))

    # when a client subscribes
    with caplog.at_level("ERROR"):
        message, request_id = await first_message(live, account.token.secret)

    # then it gets a generic error carrying the connection's request id; the log has the rest
    assert request_id == REQUEST_ID
    assert message["type"] == "next"
    [error] = message["payload"]["errors"]
    assert error["message"] == "Internal server error."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": REQUEST_ID}
    assert SECRET not in str(message)
    assert any(REQUEST_ID in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_domain_error_in_a_subscription_keeps_its_code(
    live: Live, account: NewAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        live_stream, "balance_changes", failing_stream(NotFound("No such account."))
    )

    message, _ = await first_message(live, account.token.secret)

    [error] = message["payload"]["errors"]
    assert (error["message"], error["extensions"]) == ("No such account.", {"code": "NOT_FOUND"})


async def test_an_unexpected_error_in_a_field_of_an_event_is_masked(
    live: Live, account: NewAccount, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a subscription to the messages of the entries, whose loading fails
    async def broken(ids: list[int]) -> None:
        raise RuntimeError(SECRET)

    token = account.token.secret
    async with transport_ws(live.ws_url, token) as ws:
        await subscribe(ws, WITH_MESSAGES)
        await next_event(ws)
        monkeypatch.setattr(history, "messages_by_ids", broken)

        # when an event comes
        await live.send(token, inbox.id)
        message = await receive(ws)
        assert ws.response is not None
        request_id = ws.response.headers["x-request-id"]

    # then the event arrives, the failed field masked
    [error] = message["payload"]["errors"]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
    assert error["path"] == ["balanceChanged", "entries", 0, "message"]
    assert message["payload"]["data"]["balanceChanged"]["balance"]["total"] == 999
    assert SECRET not in str(message)


async def test_a_query_over_legacy_graphql_ws_is_a_coded_error_not_an_incident(
    live: Live, account: NewAccount, caplog: pytest.LogCaptureFixture
) -> None:
    init = {"authorization": f"Bearer {account.token.secret}"}
    async with websockets.connect(live.ws_url, subprotocols=[LEGACY_WS]) as ws:
        await send_json(ws, {"type": "connection_init", "payload": init})
        assert (await receive(ws))["type"] == "connection_ack"
        with caplog.at_level("ERROR", logger="tally.graphql"):
            start = {"id": "1", "type": "start", "payload": {"query": "{ viewer { id } }"}}
            await send_json(ws, start)
            while (message := await receive(ws))["type"] == "ka":
                pass

    assert message["type"] == "error"
    assert message["payload"]["extensions"] == {"code": "BAD_REQUEST"}
    assert message["payload"]["message"] == "queries are not allowed"
    assert [r for r in caplog.records if r.name == "tally.graphql"] == []
