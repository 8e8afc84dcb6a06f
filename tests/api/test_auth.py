from __future__ import annotations

import pytest

from services.accounts import NewAccount
from tests.conftest import Api

VIEWER = "{ viewer { id name role } }"
CREATE_MEMBER = """
mutation($input: CreateMemberInput!) {
  createMember(input: $input) { member { id } userErrors { code field message } }
}
"""
CREATE_TOKEN = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token tokenId userErrors { code field message } }
}
"""
REVOKE_TOKEN = """
mutation($input: RevokeApiTokenInput!) {
  revokeApiToken(input: $input) { revoked userErrors { code field message } }
}
"""


def unauthenticated(body: dict[str, object]) -> bool:
    errors = body.get("errors")
    assert isinstance(errors, list)
    return body["data"] is None and errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("token", [None, "", "tly_nope", "garbage"])
async def test_no_valid_token_is_unauthenticated(api: Api, account: NewAccount, token: str) -> None:
    assert unauthenticated(await api(VIEWER, token=token))


async def test_authorization_needs_the_bearer_scheme(
    api: Api, account: NewAccount, client: object
) -> None:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    response = await client.post(
        "/graphql", json={"query": VIEWER}, headers={"Authorization": account.token.secret}
    )
    assert unauthenticated(response.json())


async def test_mutations_without_a_token_change_nothing(api: Api, account: NewAccount) -> None:
    variables = {"input": {"name": "Eve", "email": "eve@acme.example"}}
    assert unauthenticated(await api(CREATE_MEMBER, variables, token=None))
    members = await api("{ account { members { email } } }", token=account.token.secret)
    assert [m["email"] for m in members["data"]["account"]["members"]] == ["ada@acme.example"]


async def test_introspection_works_without_a_token(api: Api) -> None:
    body = await api("{ __schema { queryType { name } } }", token=None)
    assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


async def test_viewer_is_the_token_owner(api: Api, account: NewAccount) -> None:
    body = await api(VIEWER, token=account.token.secret)
    assert body["data"]["viewer"] == {"id": str(account.admin.id), "name": "Ada", "role": "ADMIN"}


async def test_revoked_token_is_refused_on_the_next_request(api: Api, account: NewAccount) -> None:
    token = account.token.secret
    body = await api(REVOKE_TOKEN, {"input": {"tokenId": str(account.token.token.id)}}, token=token)
    assert body["data"]["revokeApiToken"] == {"revoked": True, "userErrors": []}
    assert unauthenticated(await api(VIEWER, token=token))


async def test_a_new_token_works_and_is_shown_once(api: Api, account: NewAccount) -> None:
    variables = {"input": {"memberId": str(account.admin.id), "name": "CI"}}
    body = await api(CREATE_TOKEN, variables, token=account.token.secret)
    created = body["data"]["createApiToken"]
    assert created["userErrors"] == []
    assert created["token"].startswith("tly_")
    assert (await api(VIEWER, token=created["token"]))["data"]["viewer"]["name"] == "Ada"


async def test_refused_requests_are_not_logged_as_errors(
    api: Api, account: NewAccount, caplog: pytest.LogCaptureFixture
) -> None:
    # given a request without a token, one with a syntax error and one with an unknown field
    with caplog.at_level("ERROR"):
        await api(VIEWER, token=None)
        await api("{ viewer { ", token=account.token.secret)
        await api("{ viewer { nope } }", token=account.token.secret)
    # then none of them is an incident in the server's log
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []
