from __future__ import annotations

from typing import Any

import pytest

from services.accounts import NewAccount, create_account
from services.clock import FrozenClock
from tests.conftest import Api

CREATE_MEMBER = """
mutation($input: CreateMemberInput!) {
  createMember(input: $input) {
    member { id name email role personalInbox { phoneNumber kind owner { email } } }
    userErrors { code field message }
  }
}
"""
CREATE_INBOX = """
mutation($input: CreateInboxInput!) {
  createInbox(input: $input) {
    inbox { id name phoneNumber kind owner { id } members { email } }
    userErrors { code field message }
  }
}
"""
UPDATE_ACCOUNT = """
mutation($input: UpdateAccountInput!) {
  updateAccount(input: $input) {
    account { name timezone weekStart }
    userErrors { code field message }
  }
}
"""
CREATE_TOKEN = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token tokenId userErrors { code field message } }
}
"""
ACCOUNT = """
{ account { id name timezone weekStart createdAt
    plan { name monthlyCredits pricePerCreditCents currency }
    members { email role personalInbox { phoneNumber } }
    inboxes { phoneNumber kind members { email } } } }
"""


def errors_of(body: dict[str, Any], mutation: str) -> list[dict[str, Any]]:
    payload = body["data"][mutation]
    errors: list[dict[str, Any]] = payload["userErrors"]
    if errors:
        assert all(v is None for k, v in payload.items() if k != "userErrors")
    return errors


async def add_member(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("name", "Ben")
    fields.setdefault("email", "ben@acme.example")
    return await api(CREATE_MEMBER, {"input": fields}, token=token)


async def member_token(api: Api, account: NewAccount) -> str:
    body = await add_member(api, account.token.secret, personalPhoneNumber="415 555 0101")
    member_id = body["data"]["createMember"]["member"]["id"]
    made = await api(
        CREATE_TOKEN, {"input": {"memberId": member_id, "name": "t"}}, token=account.token.secret
    )
    token: str = made["data"]["createApiToken"]["token"]
    return token


async def test_account_query_shows_the_contract_fields(api: Api, account: NewAccount) -> None:
    body = await api(ACCOUNT, token=account.token.secret)
    shown = body["data"]["account"]
    assert shown["createdAt"] == "2026-01-15T12:00:00+00:00"
    assert shown["plan"] == {
        "name": "Standard",
        "monthlyCredits": 1000,
        "pricePerCreditCents": 2,
        "currency": "USD",
    }
    assert (shown["timezone"], shown["weekStart"]) == ("America/New_York", "MONDAY")


async def test_create_member_with_a_personal_inbox(api: Api, account: NewAccount) -> None:
    body = await add_member(api, account.token.secret, personalPhoneNumber="(415) 555-0101")
    member = body["data"]["createMember"]["member"]
    assert member["role"] == "MEMBER"
    assert member["personalInbox"] == {
        "phoneNumber": "+14155550101",
        "kind": "PERSONAL",
        "owner": {"email": "ben@acme.example"},
    }


@pytest.mark.parametrize(
    ("fields", "code", "path"),
    [
        ({"email": "nope"}, "INVALID_VALUE", ["input", "email"]),
        ({"name": "   "}, "INVALID_VALUE", ["input", "name"]),
        ({"personalPhoneNumber": "123"}, "INVALID_PHONE_NUMBER", ["input", "personalPhoneNumber"]),
        ({"email": "ADA@acme.example"}, "ALREADY_EXISTS", ["input", "email"]),
    ],
)
async def test_create_member_user_errors(
    api: Api, account: NewAccount, fields: dict[str, Any], code: str, path: list[str]
) -> None:
    body = await add_member(api, account.token.secret, **fields)
    [error] = errors_of(body, "createMember")
    assert (error["code"], error["field"]) == (code, path)
    assert error["message"]


async def test_a_taken_number_in_another_format_already_exists(
    api: Api, account: NewAccount
) -> None:
    await add_member(api, account.token.secret, personalPhoneNumber="+1 415 555 0101")
    body = await add_member(
        api, account.token.secret, email="cleo@acme.example", personalPhoneNumber="4155550101"
    )
    [error] = errors_of(body, "createMember")
    assert (error["code"], error["field"]) == ("ALREADY_EXISTS", ["input", "personalPhoneNumber"])
    shown = await api(ACCOUNT, token=account.token.secret)
    assert len(shown["data"]["account"]["members"]) == 2


async def test_create_shared_inbox(api: Api, account: NewAccount) -> None:
    variables = {
        "input": {
            "name": "Front desk",
            "phoneNumber": "+44 20 7946 0958",
            "memberIds": [str(account.admin.id)],
        }
    }
    body = await api(CREATE_INBOX, variables, token=account.token.secret)
    inbox = body["data"]["createInbox"]["inbox"]
    assert inbox["phoneNumber"] == "+442079460958"
    assert (inbox["kind"], inbox["owner"]) == ("SHARED", None)
    assert inbox["members"] == [{"email": "ada@acme.example"}]


@pytest.mark.parametrize(
    ("fields", "code", "path"),
    [
        ({"phoneNumber": "555"}, "INVALID_PHONE_NUMBER", ["input", "phoneNumber"]),
        ({"memberIds": ["999999"]}, "NOT_FOUND", ["input", "memberIds"]),
        ({"memberIds": ["not-an-id"]}, "NOT_FOUND", ["input", "memberIds"]),
        ({"name": ""}, "INVALID_VALUE", ["input", "name"]),
    ],
)
async def test_create_inbox_user_errors(
    api: Api, account: NewAccount, fields: dict[str, Any], code: str, path: list[str]
) -> None:
    variables = {"input": {"name": "Desk", "phoneNumber": "+1 415 555 0100", **fields}}
    body = await api(CREATE_INBOX, variables, token=account.token.secret)
    [error] = errors_of(body, "createInbox")
    assert (error["code"], error["field"]) == (code, path)


async def test_update_account_and_its_errors(api: Api, account: NewAccount) -> None:
    token = account.token.secret
    good = {"input": {"name": "Acme 2", "timezone": "Asia/Kolkata", "weekStart": "SUNDAY"}}
    body = await api(UPDATE_ACCOUNT, good, token=token)
    assert body["data"]["updateAccount"]["account"] == {
        "name": "Acme 2",
        "timezone": "Asia/Kolkata",
        "weekStart": "SUNDAY",
    }
    bad = await api(UPDATE_ACCOUNT, {"input": {"timezone": "Nowhere/Land"}}, token=token)
    [error] = errors_of(bad, "updateAccount")
    assert (error["code"], error["field"]) == ("INVALID_VALUE", ["input", "timezone"])


async def test_a_member_gets_forbidden_from_admin_mutations_and_nothing_changes(
    api: Api, account: NewAccount
) -> None:
    token = await member_token(api, account)
    attempts = [
        (CREATE_MEMBER, {"input": {"name": "Eve", "email": "eve@acme.example"}}, "createMember"),
        (CREATE_INBOX, {"input": {"name": "D", "phoneNumber": "+14155550188"}}, "createInbox"),
        (UPDATE_ACCOUNT, {"input": {"name": "Pwned"}}, "updateAccount"),
    ]
    for query, variables, name in attempts:
        # The contract: fields marked ADMIN answer a MEMBER with a GraphQL error.
        body = await api(query, variables, token=token)
        [error] = body["errors"]
        assert (error["extensions"]["code"], error["path"]) == ("FORBIDDEN", [name])
        assert body["data"] is None
    # createApiToken is open to members for their own tokens: another's is a userError.
    other = {"input": {"memberId": str(account.admin.id), "name": "x"}}
    [error] = errors_of(await api(CREATE_TOKEN, other, token=token), "createApiToken")
    assert error["code"] == "FORBIDDEN"
    shown = (await api(ACCOUNT, token=account.token.secret))["data"]["account"]
    assert shown["name"] == "Acme"
    assert len(shown["members"]) == 2
    assert len(shown["inboxes"]) == 1


async def test_a_member_sees_only_the_inboxes_it_may_send_from(
    api: Api, account: NewAccount
) -> None:
    token = await member_token(api, account)
    await api(
        CREATE_INBOX,
        {"input": {"name": "Desk", "phoneNumber": "+14155550100"}},
        token=account.token.secret,
    )
    shown = (await api(ACCOUNT, token=token))["data"]["account"]["inboxes"]
    assert [i["phoneNumber"] for i in shown] == ["+14155550101"]


async def test_ids_of_another_account_are_not_found(
    api: Api, account: NewAccount, clock: FrozenClock
) -> None:
    other = await create_account(name="B", admin_name="B", admin_email="b@b.example", clock=clock)
    token = other.token.secret
    foreign_member = str(account.admin.id)
    attempts: list[tuple[str, dict[str, Any], str]] = [
        (CREATE_TOKEN, {"input": {"memberId": foreign_member, "name": "x"}}, "createApiToken"),
        (
            CREATE_INBOX,
            {"input": {"name": "D", "phoneNumber": "+14155550177", "memberIds": [foreign_member]}},
            "createInbox",
        ),
        (
            """mutation($input: RevokeApiTokenInput!) {
                 revokeApiToken(input: $input) { revoked userErrors { code field message } } }""",
            {"input": {"tokenId": str(account.token.token.id)}},
            "revokeApiToken",
        ),
    ]
    for query, variables, name in attempts:
        body = await api(query, variables, token=token)
        assert body["data"][name]["userErrors"][0]["code"] == "NOT_FOUND", name
    mine = await api("{ viewer { email } }", token=account.token.secret)
    assert mine["data"]["viewer"]["email"] == "ada@acme.example"
    theirs = (await api(ACCOUNT, token=token))["data"]["account"]
    assert [m["email"] for m in theirs["members"]] == ["b@b.example"]
    assert theirs["inboxes"] == []
