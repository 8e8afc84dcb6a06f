from __future__ import annotations

import json

import httpx
import pytest

from services import accounts as account_service
from services.accounts import NewAccount

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
    async def broken(account_id: int) -> None:
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setattr(account_service, "get_account", broken)
    headers = {"Authorization": f"Bearer {account.token.secret}"}
    # when a client asks
    with caplog.at_level("ERROR"):
        response = await client.post("/graphql", json=QUERY, headers=headers)
    # then it sees a generic error with the request id, and the log has the details
    [error] = response.json()["errors"]
    assert error["message"] == "Internal server error."
    assert error["extensions"] == {
        "code": "INTERNAL_SERVER_ERROR",
        "requestId": response.headers["x-request-id"],
    }
    assert "SELECT" not in response.text
    assert any(response.headers["x-request-id"] in r.getMessage() for r in caplog.records)
