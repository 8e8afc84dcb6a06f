"""Hostile HTTP requests to /graphql: each is a 4xx with a JSON body, never a 500."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from api import cli
from api.settings import Settings
from services.accounts import NewAccount

ONE_MIB = 1024 * 1024
REVOKE = "mutation ($id: ID!) { revokeApiToken(input: {tokenId: $id}) { revoked } }"
VIEWER = '{"query": "{ viewer { id } }"}'


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    [error] = body["errors"]
    assert error["message"]
    code: str = error["extensions"]["code"]
    return code


async def test_a_body_over_1_mib_is_413(client: httpx.AsyncClient) -> None:
    # given a declared body one byte over the limit
    raw = b" " * (ONE_MIB + 1)

    # when
    response = await client.post(
        "/graphql", content=raw, headers={"Content-Type": "application/json"}
    )

    # then
    assert error_code(response, 413) == "PAYLOAD_TOO_LARGE"


async def test_a_chunked_body_over_1_mib_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(ONE_MIB // 4096 + 1):
            yield b" " * 4096

    response = await client.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert "content-length" not in response.request.headers
    assert error_code(response, 413) == "PAYLOAD_TOO_LARGE"


async def test_a_body_of_1_mib_is_read(client: httpx.AsyncClient, account: NewAccount) -> None:
    # given a valid document padded with spaces to exactly the limit
    raw = VIEWER.encode().ljust(ONE_MIB)
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {account.token.secret}",
    }

    # when
    response = await client.post("/graphql", content=raw, headers=headers)

    # then
    assert response.status_code == 200, response.text
    assert response.json()["data"]["viewer"]["id"] == str(account.admin.id)


async def test_a_content_length_that_is_not_a_number_is_400(client: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": "lots"}
    request = client.build_request("POST", "/graphql", content=VIEWER, headers=headers)

    response = await client.send(request)

    assert error_code(response, 400) == "BAD_REQUEST"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b'{"query": "{ viewer', "application/json", id="malformed-json"),
        pytest.param(b'{"query": "\xff\xfe"}', "application/json", id="invalid-utf8"),
        pytest.param(b'{"query": "\xc3"}', "application/json; charset=utf-8", id="cut-utf8"),
        pytest.param(VIEWER.encode("utf-16"), "application/json", id="utf-16"),
        pytest.param(b"\xef\xbb\xbf" + VIEWER.encode(), "application/json", id="utf-8-bom"),
        pytest.param(b"query={viewer{id}}", "text/plain", id="wrong-content-type"),
        pytest.param(b"[1, 2]", "application/json", id="a-batch"),
        pytest.param(b'{"query": 5}', "application/json", id="query-not-a-string"),
        pytest.param(b"", "application/json", id="empty"),
        pytest.param(b'"{ viewer { id } }"', "application/json", id="a-json-string"),
        pytest.param(b"5", "application/json", id="a-json-number"),
        pytest.param(b"null", "application/json", id="json-null"),
        pytest.param(b"true", "application/json", id="a-json-boolean"),
        pytest.param(
            b'{"query": "{ viewer { id } }", "variables": {"n": ' + b"9" * 5000 + b"}}",
            "application/json",
            id="an-integer-of-5000-digits",
        ),
    ],
)
async def test_a_malformed_request_is_400_json(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post(
        "/graphql", content=content, headers={"Content-Type": content_type}
    )

    assert error_code(response, 400) == "BAD_REQUEST"


async def test_a_mutation_over_get_is_refused(
    client: httpx.AsyncClient, account: NewAccount
) -> None:
    # given a mutation in the query string of a GET, the shape of a cross-site link
    variables = json.dumps({"id": str(account.token.token.id)})
    headers = {"Authorization": f"Bearer {account.token.secret}"}

    # when
    params = {"query": REVOKE, "variables": variables}
    response = await client.get("/graphql", params=params, headers=headers)

    # then
    assert error_code(response, 400) == "BAD_REQUEST"
    assert "mutations are not allowed" in response.json()["errors"][0]["message"]
    viewer = await client.post(
        "/graphql", content=VIEWER, headers={**headers, "Content-Type": "application/json"}
    )
    assert viewer.json()["data"]["viewer"]["id"] == str(account.admin.id)  # the token still works


async def test_an_unsupported_method_is_405_json(client: httpx.AsyncClient) -> None:
    response = await client.put("/graphql", content=VIEWER)

    assert error_code(response, 405) == "METHOD_NOT_ALLOWED"


def test_tally_serve_bounds_websocket_messages_by_the_body_limit() -> None:
    args = argparse.Namespace(host="127.0.0.1", port=8000, workers=1, no_migrate=True)

    default = Settings(secret_key="s", webhook_secret="w")
    raised = Settings(secret_key="s", webhook_secret="w", max_body_bytes=2 * ONE_MIB)

    assert cli.server_config(args, default).ws_max_size == ONE_MIB
    assert cli.server_config(args, raised).ws_max_size == 2 * ONE_MIB
