from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from models import Account, Inbox, LedgerEntry, Message
from models.enums import CreditBucket, LedgerEntryKind, Role
from services.access import Principal
from services.accounts import NewAccount, PlanTerms, create_account
from services.clock import FrozenClock
from services.inboxes import create_shared_inbox
from services.messaging import receive_message, send_message
from services.runtime import Runtime
from tests.api.test_accounts_api import errors_of, member_token
from tests.conftest import Api

SHARED_NUMBER = "+14155550100"
MEMBER_NUMBER = "+14155550101"
CUSTOMER = "+14155550123"

SEND = """
mutation($input: SendMessageInput!) {
  sendMessage(input: $input) {
    message {
      id direction from to body encoding segments credits status providerMessageId createdAt
      inbox { id phoneNumber } sender { email }
    }
    balance { total subscriptionCredits purchasedCredits }
    userErrors { code field message }
  }
}
"""
MESSAGES = """
query($first: Int, $after: String, $range: DateRangeInput, $inboxId: ID, $direction: Direction) {
  account {
    messages(first: $first, after: $after, range: $range, inboxId: $inboxId,
             direction: $direction) {
      edges { cursor node { id body direction inbox { phoneNumber } sender { email } } }
      nodes { id }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""


async def open_shared_inbox(admin: Principal, clock: FrozenClock) -> Inbox:
    """A shared inbox no member is listed on: only admins may send from it."""
    return await create_shared_inbox(
        actor=admin,
        name="Support",
        phone_number=SHARED_NUMBER,
        member_ids=[],
        region="US",
        clock=clock,
    )


@pytest.fixture
async def shared_inbox(admin: Principal, clock: FrozenClock) -> Inbox:
    return await open_shared_inbox(admin, clock)


async def send(
    api: Api, token: str, inbox_id: int | str, body: str = "Hello", **fields: Any
) -> dict[str, Any]:
    variables = {"input": {"inboxId": str(inbox_id), "to": CUSTOMER, "body": body, **fields}}
    return await api(SEND, variables, token=token)


async def sent_directly(runtime: Runtime, actor: Principal, inbox: Inbox, body: str) -> Message:
    sent = await send_message(
        actor=actor,
        inbox_id=inbox.id,
        to=CUSTOMER,
        body=body,
        idempotency_key=None,
        region="US",
        runtime=runtime,
    )
    return sent.message


async def received(runtime: Runtime, inbox: Inbox, body: str, provider_id: str) -> Message:
    result = await receive_message(
        from_number=CUSTOMER,
        to_number=inbox.phone_number,
        body=body,
        provider_message_id=provider_id,
        region="US",
        runtime=runtime,
    )
    return result.message


async def list_messages(api: Api, token: str, **variables: Any) -> dict[str, Any]:
    return await api(MESSAGES, variables, token=token)


def connection(body: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = body["data"]["account"]["messages"]
    return shown


async def test_send_message_charges_one_credit_per_segment_and_returns_the_message(
    api: Api, account: NewAccount, shared_inbox: Inbox
) -> None:
    # when
    body = await send(api, account.token.secret, shared_inbox.id, "Hello", to="(415) 555-0123")

    # then
    payload = body["data"]["sendMessage"]
    assert payload["userErrors"] == []
    message = payload["message"]
    assert {k: v for k, v in message.items() if k not in ("id", "providerMessageId")} == {
        "direction": "OUTBOUND",
        "from": SHARED_NUMBER,
        "to": CUSTOMER,
        "body": "Hello",
        "encoding": "GSM7",
        "segments": 1,
        "credits": 1,
        "status": "SENT",
        "createdAt": "2026-01-15T12:00:00+00:00",
        "inbox": {"id": str(shared_inbox.id), "phoneNumber": SHARED_NUMBER},
        "sender": {"email": "ada@acme.example"},
    }
    assert payload["balance"] == {"total": 999, "subscriptionCredits": 999, "purchasedCredits": 0}
    row = await Message.get(id=int(message["id"]))
    assert row.provider_message_id == message["providerMessageId"]
    [entry] = await LedgerEntry.filter(kind=LedgerEntryKind.OUTBOUND_MESSAGE)
    assert (entry.message_id, entry.bucket, entry.credits) == (
        row.id,
        CreditBucket.SUBSCRIPTION,
        -1,
    )


async def nothing_was_charged(account: NewAccount) -> None:
    assert await Message.all().count() == 0
    assert await LedgerEntry.filter(account_id=account.account.id).count() == 1
    row = await Account.get(id=account.account.id)
    assert (row.subscription_credits, row.purchased_credits) == (1000, 0)


@pytest.mark.parametrize(
    ("fields", "code", "path"),
    [
        ({"body": ""}, "EMPTY_BODY", ["input", "body"]),
        ({"body": " \n\t "}, "EMPTY_BODY", ["input", "body"]),
        ({"body": "a" * 1601}, "BODY_TOO_LONG", ["input", "body"]),
        ({"to": "12345"}, "INVALID_PHONE_NUMBER", ["input", "to"]),
        ({"inboxId": "999999"}, "NOT_FOUND", ["input", "inboxId"]),
        ({"inboxId": "not-an-id"}, "NOT_FOUND", ["input", "inboxId"]),
    ],
)
async def test_send_message_user_errors_change_nothing(
    api: Api,
    account: NewAccount,
    shared_inbox: Inbox,
    fields: dict[str, Any],
    code: str,
    path: list[str],
) -> None:
    # when
    body = await send(api, account.token.secret, shared_inbox.id, **fields)

    # then
    [error] = errors_of(body, "sendMessage")
    assert (error["code"], error["field"]) == (code, path)
    assert error["message"]
    await nothing_was_charged(account)


async def test_a_member_may_not_send_from_an_inbox_it_was_not_given(
    api: Api, account: NewAccount, shared_inbox: Inbox
) -> None:
    token = await member_token(api, account)
    [error] = errors_of(await send(api, token, shared_inbox.id), "sendMessage")
    assert (error["code"], error["field"]) == ("FORBIDDEN", ["input", "inboxId"])
    await nothing_was_charged(account)


async def test_an_inbox_of_another_account_is_not_found(
    api: Api, account: NewAccount, shared_inbox: Inbox, clock: FrozenClock
) -> None:
    other = await create_account(name="B", admin_name="B", admin_email="b@b.example", clock=clock)
    [error] = errors_of(await send(api, other.token.secret, shared_inbox.id), "sendMessage")
    assert (error["code"], error["field"]) == ("NOT_FOUND", ["input", "inboxId"])
    assert await Message.all().count() == 0


async def test_a_send_the_balance_cannot_cover_is_insufficient_credits_and_stores_nothing(
    api: Api, db: str, clock: FrozenClock
) -> None:
    # given an account with 5 credits and no auto-recharge
    poor = await create_account(
        name="Poor",
        admin_name="P",
        admin_email="p@p.example",
        plan=PlanTerms(monthly_credits=5),
        clock=clock,
    )
    actor = Principal(poor.account.id, poor.admin.id, Role.ADMIN, poor.token.token.id)
    inbox = await create_shared_inbox(
        actor=actor, name="D", phone_number=SHARED_NUMBER, member_ids=[], region="US", clock=clock
    )

    # when it sends a 2-segment message... then a 6-segment one
    ok = await send(api, poor.token.secret, inbox.id, "a" * 161)
    refused = await send(api, poor.token.secret, inbox.id, "a" * 800)

    # then
    assert ok["data"]["sendMessage"]["balance"]["total"] == 3
    [error] = errors_of(refused, "sendMessage")
    assert (error["code"], error["field"]) == ("INSUFFICIENT_CREDITS", None)
    assert await Message.all().count() == 1
    assert (await Account.get(id=poor.account.id)).subscription_credits == 3


async def test_the_same_idempotency_key_twice_sends_once(
    api: Api, account: NewAccount, shared_inbox: Inbox
) -> None:
    # when
    first = await send(api, account.token.secret, shared_inbox.id, idempotencyKey="k-1")
    again = await send(api, account.token.secret, shared_inbox.id, idempotencyKey="k-1")

    # then
    assert again["data"]["sendMessage"] == first["data"]["sendMessage"]
    assert await Message.all().count() == 1
    assert await LedgerEntry.filter(kind=LedgerEntryKind.OUTBOUND_MESSAGE).count() == 1
    assert (await Account.get(id=account.account.id)).subscription_credits == 999


async def test_an_idempotency_key_reused_with_another_body_is_a_conflict(
    api: Api, account: NewAccount, shared_inbox: Inbox
) -> None:
    await send(api, account.token.secret, shared_inbox.id, "One", idempotencyKey="k-1")
    body = await send(api, account.token.secret, shared_inbox.id, "Two", idempotencyKey="k-1")
    [error] = errors_of(body, "sendMessage")
    assert (error["code"], error["field"]) == ("IDEMPOTENCY_CONFLICT", ["input", "idempotencyKey"])
    assert [m.body for m in await Message.all()] == ["One"]


async def test_pages_of_messages_walk_every_message_once_newest_first(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    # given 7 messages a microsecond apart in threes (the id breaks ties at one instant)
    clock = runtime.clock
    assert isinstance(clock, FrozenClock)
    sent = []
    for n in range(7):
        if n % 3 == 0:
            clock.advance(timedelta(microseconds=1))
        sent.append(await sent_directly(runtime, admin, shared_inbox, f"message {n}"))

    # when walking pages of 3
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = connection(await list_messages(api, account.token.secret, first=3, after=after))
        pages += 1
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert [node["id"] for node in page["nodes"]] == [e["node"]["id"] for e in page["edges"]]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]

    # then
    assert pages == 3
    assert seen == [str(m.id) for m in reversed(sent)]


async def test_an_empty_page_has_no_end_cursor(api: Api, account: NewAccount) -> None:
    page = connection(await list_messages(api, account.token.secret))
    assert page == {"edges": [], "nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}


async def test_a_member_sees_only_messages_of_its_inboxes(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    # given a member with a personal inbox, and messages in it and in a shared inbox
    token = await member_token(api, account)
    personal = await Inbox.get(phone_number=MEMBER_NUMBER)
    mine = await send(api, token, personal.id, "from the member")
    await sent_directly(runtime, admin, shared_inbox, "from the admin")
    await received(runtime, personal, "to the member", "in-1")

    # when
    as_member = connection(await list_messages(api, token))
    as_admin = connection(await list_messages(api, account.token.secret))

    # then
    assert [e["node"]["body"] for e in as_member["edges"]] == ["to the member", "from the member"]
    assert as_member["edges"][1]["node"]["sender"]["email"] == "ben@acme.example"
    assert as_member["edges"][0]["node"]["sender"] is None
    assert mine["data"]["sendMessage"]["message"]["inbox"]["phoneNumber"] == MEMBER_NUMBER
    assert len(as_admin["edges"]) == 3


@pytest.mark.parametrize("inbox", ["shared", "malformed", "missing", "foreign"])
async def test_an_inbox_the_viewer_cannot_see_is_not_found(
    api: Api, account: NewAccount, shared_inbox: Inbox, clock: FrozenClock, inbox: str
) -> None:
    # given
    token = await member_token(api, account)
    other = await create_account(name="B", admin_name="B", admin_email="b@b.example", clock=clock)
    other_actor = Principal(other.account.id, other.admin.id, Role.ADMIN, other.token.token.id)
    foreign = await create_shared_inbox(
        actor=other_actor,
        name="F",
        phone_number="+14155550199",
        member_ids=[],
        region="US",
        clock=clock,
    )
    inbox_id = {
        "shared": str(shared_inbox.id),
        "malformed": "inbox-1",
        "missing": "987654",
        "foreign": str(foreign.id),
    }[inbox]

    # when
    body = await list_messages(api, token, inboxId=inbox_id)

    # then
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert error["message"] == "No such inbox."


async def test_a_malformed_inbox_id_reads_like_an_unknown_inbox(
    api: Api, account: NewAccount, shared_inbox: Inbox
) -> None:
    messages = []
    for inbox_id in ("not-an-id", "987654"):
        body = await send(api, account.token.secret, shared_inbox.id, inboxId=inbox_id)
        [error] = errors_of(body, "sendMessage")
        messages.append(error["message"])
    assert messages == ["No such inbox.", "No such inbox."]


async def test_messages_filter_by_inbox_and_direction(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    # given
    await member_token(api, account)
    personal = await Inbox.get(phone_number=MEMBER_NUMBER)
    await sent_directly(runtime, admin, shared_inbox, "out shared")
    await sent_directly(runtime, admin, personal, "out personal")
    await received(runtime, shared_inbox, "in shared", "in-1")
    token = account.token.secret

    # when
    in_shared = await list_messages(api, token, inboxId=str(shared_inbox.id))
    inbound = await list_messages(api, token, direction="INBOUND")
    both = await list_messages(api, token, inboxId=str(shared_inbox.id), direction="OUTBOUND")

    # then
    def bodies(body: dict[str, Any]) -> list[str]:
        return [edge["node"]["body"] for edge in connection(body)["edges"]]

    assert bodies(in_shared) == ["in shared", "out shared"]
    assert bodies(inbound) == ["in shared"]
    assert bodies(both) == ["out shared"]


async def test_a_range_selects_whole_local_days_in_the_account_time_zone(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    # given messages at 04:59Z and 05:00Z on Jan 16: Jan 15 and Jan 16 in New York
    clock = runtime.clock
    assert isinstance(clock, FrozenClock)
    clock.advance(timedelta(hours=16, minutes=59))
    await sent_directly(runtime, admin, shared_inbox, "late on the 15th")
    clock.advance(timedelta(minutes=1))
    await sent_directly(runtime, admin, shared_inbox, "early on the 16th")

    # when
    day15 = await list_messages(
        api, account.token.secret, range={"start": "2026-01-15", "end": "2026-01-15"}
    )
    day16 = await list_messages(
        api, account.token.secret, range={"start": "2026-01-16", "end": "2026-01-16"}
    )

    # then
    assert [e["node"]["body"] for e in connection(day15)["edges"]] == ["late on the 15th"]
    assert [e["node"]["body"] for e in connection(day16)["edges"]] == ["early on the 16th"]


async def test_a_range_that_ends_before_it_starts_is_bad_user_input_naming_range(
    api: Api, account: NewAccount
) -> None:
    body = await list_messages(
        api, account.token.secret, range={"start": "2026-01-15", "end": "2026-01-14"}
    )
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "'range'" in error["message"]


@pytest.mark.parametrize("first", [0, -1, 101])
async def test_first_outside_1_to_100_is_bad_user_input_naming_first(
    api: Api, account: NewAccount, first: int
) -> None:
    body = await list_messages(api, account.token.secret, first=first)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "'first'" in error["message"]


async def test_first_may_be_1_or_100(api: Api, account: NewAccount) -> None:
    for first in (1, 100):
        body = await list_messages(api, account.token.secret, first=first)
        assert "errors" not in body


async def cursor_after_one_message(
    api: Api, account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime
) -> str:
    for n in range(2):
        await sent_directly(runtime, admin, inbox, f"m{n}")
    page = connection(await list_messages(api, account.token.secret, first=1))
    cursor: str = page["pageInfo"]["endCursor"]
    return cursor


def tampered(cursor: str) -> str:
    # The first character: every one of its bits is data (the last one's may be padding).
    first = "A" if cursor[0] != "A" else "B"
    return first + cursor[1:]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda cursor: "garbage!!", id="not-base64"),
        pytest.param(lambda cursor: "", id="empty"),
        pytest.param(lambda cursor: "YXJyYXljb25uZWN0aW9uOjA", id="someone-elses-offset"),
        pytest.param(tampered, id="tampered"),
        pytest.param(lambda cursor: cursor * 20, id="too-long"),
    ],
)
async def test_a_cursor_this_server_did_not_issue_is_bad_user_input_naming_after(
    api: Api,
    account: NewAccount,
    admin: Principal,
    shared_inbox: Inbox,
    runtime: Runtime,
    forge: Any,
) -> None:
    # given
    cursor = await cursor_after_one_message(api, account, admin, shared_inbox, runtime)

    # when
    body = await list_messages(api, account.token.secret, after=forge(cursor))

    # then
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "'after'" in error["message"]


async def test_a_cursor_continues_after_its_message(
    api: Api, account: NewAccount, admin: Principal, shared_inbox: Inbox, runtime: Runtime
) -> None:
    cursor = await cursor_after_one_message(api, account, admin, shared_inbox, runtime)
    page = connection(await list_messages(api, account.token.secret, after=cursor))
    assert [e["node"]["body"] for e in page["edges"]] == ["m0"]
    assert page["pageInfo"]["hasNextPage"] is False
