"""application/graphql-response+json (GraphQL over HTTP) for clients that ask for it;
application/json answers as before."""

from __future__ import annotations

import httpx
import pytest

from api.graphql_media import prefers_graphql_response
from services.accounts import NewAccount

MEDIA = "application/graphql-response+json"
FIELD_ERROR = """{
  segmentInfo(body: "hi") { segments }
  account { messages(inboxId: "9") { nodes { id } } }
}"""


async def post(client: httpx.AsyncClient, token: str, accept: str, body: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": accept}
    return await client.post("/graphql", json=body, headers=headers)


REQUEST_ERRORS = [
    pytest.param({"query": "{ viewer { id "}, "GRAPHQL_PARSE_FAILED", id="parse"),
    pytest.param({"query": "{ viewer { nope } }"}, "GRAPHQL_VALIDATION_FAILED", id="validation"),
    pytest.param(
        {"query": "query($b: String!) { segmentInfo(body: $b) { segments } }", "variables": {}},
        "BAD_USER_INPUT",
        id="variable coercion",
    ),
]


@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS)
async def test_a_request_error_is_a_400_without_data_in_graphql_response_json(
    client: httpx.AsyncClient, account: NewAccount, body: dict, code: str
) -> None:
    response = await post(client, account.token.secret, MEDIA, body)
    assert response.status_code == 400
    assert response.headers["content-type"] == f"{MEDIA}; charset=utf-8"
    document = response.json()
    assert "data" not in document
    assert document["errors"][0]["extensions"]["code"] == code


@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS)
async def test_application_json_clients_get_what_they_always_got(
    client: httpx.AsyncClient, account: NewAccount, body: dict, code: str
) -> None:
    response = await post(client, account.token.secret, "application/json", body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["data"] is None
    assert response.json()["errors"][0]["extensions"]["code"] == code


async def test_an_executed_operation_is_a_200_even_with_a_field_error(
    client: httpx.AsyncClient, account: NewAccount
) -> None:
    # a resolver's refusal happens during execution: the response has data, and 200
    body = {"query": FIELD_ERROR}
    response = await post(client, account.token.secret, MEDIA, body)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{MEDIA}; charset=utf-8"
    document = response.json()
    assert "data" in document
    assert document["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_a_success_is_a_200_in_the_asked_media_type(
    client: httpx.AsyncClient, account: NewAccount
) -> None:
    response = await post(client, account.token.secret, MEDIA, {"query": "{ viewer { name } }"})
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{MEDIA}; charset=utf-8"
    assert response.json() == {"data": {"viewer": {"name": "Ada"}}}


@pytest.mark.parametrize(
    ("accept", "prefers"),
    [
        (MEDIA, True),
        (f"{MEDIA}, application/json", True),
        (f"application/json, {MEDIA}", True),
        (f"application/json, {MEDIA};q=0.9", False),
        (f"{MEDIA};q=0", False),
        ("application/json", False),
        ("*/*", False),
        ("", False),
        (f"{MEDIA};q=nonsense, application/json", False),
    ],
)
def test_the_accept_header_decides(accept: str, prefers: bool) -> None:
    assert prefers_graphql_response(accept) is prefers
