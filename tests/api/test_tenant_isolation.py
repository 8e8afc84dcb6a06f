"""Every argument that takes an id: account A's token with account B's ids is NOT_FOUND,
exactly like an id that never existed, and nothing of B changes."""

from __future__ import annotations

from typing import Any

import pytest

from models import ApiToken, Inbox, LedgerEntry, Member, Message
from models.enums import Role
from services.access import Principal
from services.accounts import NewAccount, create_account
from services.clock import FrozenClock
from services.inboxes import create_shared_inbox
from services.members import create_member
from tests.conftest import Api

NEVER = "987654321"


async def snapshot(account_id: int) -> dict[str, Any]:
    """Everything of an account an attack could change."""
    return {
        "members": await Member.filter(account_id=account_id).order_by("id").values(),
        "inboxes": await Inbox.filter(account_id=account_id).order_by("id").values(),
        "tokens": await ApiToken.filter(account_id=account_id).order_by("id").values(),
        "messages": await Message.filter(account_id=account_id).count(),
        "ledger": await LedgerEntry.filter(account_id=account_id).count(),
    }


@pytest.fixture
async def victim(db: str, clock: FrozenClock) -> dict[str, str]:
    """Account B, with a member, a personal and a shared inbox and a token: their ids."""
    b = await create_account(name="B", admin_name="B", admin_email="b@b.example", clock=clock)
    admin = Principal(b.account.id, b.admin.id, Role.ADMIN, b.token.token.id)
    member = await create_member(
        actor=admin, name="Bee", email="bee@b.example", role=Role.MEMBER,
        personal_phone_number="+1 415 555 0161", region="US", clock=clock,
    )  # fmt: skip
    shared = await create_shared_inbox(
        actor=admin, name="B desk", phone_number="+1 415 555 0162", member_ids=[member.id],
        region="US", clock=clock,
    )  # fmt: skip
    return {
        "account": str(b.account.id),
        "member": str(member.id),
        "inbox": str(shared.id),
        "token": str(b.token.token.id),
    }


def mutations(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any], list[str]]]:
    """(name, document, variables, path of the id argument) for every mutation taking an id."""
    return [
        (
            "createApiToken",
            "mutation($i: CreateApiTokenInput!) { createApiToken(input: $i) "
            "{ token userErrors { code field } } }",
            {"i": {"memberId": ids["member"], "name": "x"}},
            ["input", "memberId"],
        ),
        (
            "revokeApiToken",
            "mutation($i: RevokeApiTokenInput!) { revokeApiToken(input: $i) "
            "{ revoked userErrors { code field } } }",
            {"i": {"tokenId": ids["token"]}},
            ["input", "tokenId"],
        ),
        (
            "createInbox",
            "mutation($i: CreateInboxInput!) { createInbox(input: $i) "
            "{ inbox { id } userErrors { code field } } }",
            {"i": {"name": "D", "phoneNumber": "+14155550163", "memberIds": [ids["member"]]}},
            ["input", "memberIds"],
        ),
        (
            "sendMessage",
            "mutation($i: SendMessageInput!) { sendMessage(input: $i) "
            "{ message { id } userErrors { code field } } }",
            {"i": {"inboxId": ids["inbox"], "to": "+14155550123", "body": "hi"}},
            ["input", "inboxId"],
        ),
    ]


@pytest.mark.parametrize("which", ["foreign", "never", "garbage"])
async def test_every_mutation_taking_an_id_answers_not_found_and_changes_nothing(
    api: Api, account: NewAccount, victim: dict[str, str], which: str
) -> None:
    before = await snapshot(int(victim["account"]))
    ids = {
        "foreign": victim,
        "never": dict.fromkeys(victim, NEVER),
        "garbage": dict.fromkeys(victim, "not-an-id"),
    }[which]
    for name, document, variables, path in mutations(ids):
        body = await api(document, variables, token=account.token.secret)
        payload = body["data"][name]
        assert payload["userErrors"] == [{"code": "NOT_FOUND", "field": path}], name
    assert await snapshot(int(victim["account"])) == before


@pytest.mark.parametrize("which", ["foreign", "never"])
async def test_every_query_argument_taking_an_id_answers_not_found(
    api: Api, account: NewAccount, victim: dict[str, str], which: str
) -> None:
    inbox = victim["inbox"] if which == "foreign" else NEVER
    body = await api(
        "query($id: ID) { account { messages(inboxId: $id) { nodes { id } } } }",
        {"id": inbox},
        token=account.token.secret,
    )
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_nothing_of_another_account_is_listed(
    api: Api, account: NewAccount, victim: dict[str, str]
) -> None:
    body = await api(
        "{ account { id members { id } inboxes { id } messages { nodes { id } } "
        "ledger { nodes { id } } } }",
        token=account.token.secret,
    )
    shown = body["data"]["account"]
    assert shown["id"] == str(account.account.id)
    seen = {m["id"] for m in shown["members"]} | {i["id"] for i in shown["inboxes"]}
    assert not seen & {victim["member"], victim["inbox"]}
    assert shown["messages"]["nodes"] == []
