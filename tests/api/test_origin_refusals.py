"""A browser app on an origin not in TALLY_ALLOWED_ORIGINS: one log line says how to allow it."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest
import websockets

from api.app import create_app
from api.settings import Settings
from services.runtime import Runtime
from tests.api.test_subscriptions import TRANSPORT_WS, Live

APP_ORIGIN = "http://localhost:5173"
PREFLIGHT = {
    "Origin": APP_ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "Authorization, Content-Type",
}


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "TALLY_ALLOWED_ORIGINS" in r.getMessage()]


async def test_a_refused_preflight_logs_one_line_naming_the_setting(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="tally"):
        for _ in range(3):
            response = await client.options("/graphql", headers=PREFLIGHT)
            assert response.status_code == 400
    assert refusals(caplog) == [
        f"refused a CORS preflight from origin {APP_ORIGIN}: add it to TALLY_ALLOWED_ORIGINS "
        f"(comma-separated origins, e.g. TALLY_ALLOWED_ORIGINS={APP_ORIGIN}) to allow it"
    ]


async def test_a_refused_websocket_origin_logs_one_line_naming_the_setting(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="tally"):
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(
                live.ws_url, subprotocols=[TRANSPORT_WS], additional_headers={"Origin": APP_ORIGIN}
            )
    [line] = refusals(caplog)
    assert line.startswith(f"refused a websocket from origin {APP_ORIGIN}: add it to")


async def test_a_same_origin_page_and_a_plain_request_log_nothing(
    live: Live, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    same_origin = {"Origin": live.ws_url.replace("ws://", "http://").removesuffix("/graphql")}
    with caplog.at_level("WARNING", logger="tally"):
        async with websockets.connect(
            live.ws_url, subprotocols=[TRANSPORT_WS], additional_headers=same_origin
        ):
            pass
        await client.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"Origin": APP_ORIGIN}
        )
    assert refusals(caplog) == []


async def test_an_allowed_origin_refused_for_a_header_logs_nothing(
    settings: Settings, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(
        replace(settings, allowed_origins=(APP_ORIGIN,)), runtime=runtime, manage_database=False
    )
    transport = httpx.ASGITransport(app=app)
    headers = {**PREFLIGHT, "Access-Control-Request-Headers": "X-Unheard-Of"}
    with caplog.at_level("WARNING", logger="tally"):
        async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
            response = await http.options("/graphql", headers=headers)
    assert response.status_code == 400
    assert refusals(caplog) == []
