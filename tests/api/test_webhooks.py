"""Carrier webhooks over real HTTP: signatures, limits, charging, duplicates and refunds."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.webhooks import MAX_BODY_BYTES
from models import Account, Inbox, LedgerEntry, Message
from models.enums import CreditBucket, Direction, Encoding, LedgerEntryKind, MessageStatus
from services.access import Principal
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.inboxes import create_shared_inbox
from services.messaging import send_message
from services.payments import set_payment_method
from services.purchases import buy_credits
from services.runtime import Runtime

SECRET = "hook-secret"
INBOX_NUMBER = "+14155550100"
SENDER = "+14155550199"
TWO_UCS2_SEGMENTS = "Привет " * 12  # 84 UTF-16 units: more than 70, at most 2 x 67
GRANT = (LedgerEntryKind.ALLOTMENT_GRANT, CreditBucket.SUBSCRIPTION, 1000)


def sign(raw: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def inbound(provider_id: str = "SM1", *, body: str = "hello", to: str = INBOX_NUMBER) -> bytes:
    payload = {"from": SENDER, "to": to, "body": body, "providerMessageId": provider_id}
    return json.dumps(payload).encode()


async def post(
    client: httpx.AsyncClient, path: str, raw: bytes, signature: str | None = "sign"
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Tally-Signature"] = sign(raw) if signature == "sign" else signature
    return await client.post(path, content=raw, headers=headers)


async def report(client: httpx.AsyncClient, provider_id: str, status: str) -> httpx.Response:
    raw = json.dumps({"providerMessageId": provider_id, "status": status}).encode()
    return await post(client, "/webhooks/status", raw)


async def ledger(account_id: int) -> list[tuple[Any, ...]]:
    rows = LedgerEntry.filter(account_id=account_id).order_by("id")
    return [tuple(r) for r in await rows.values_list("kind", "bucket", "credits")]


async def buckets(account_id: int) -> tuple[int, int]:
    account = await Account.get(id=account_id)
    return account.subscription_credits, account.purchased_credits


def refused(response: httpx.Response, status: int, code: str) -> bool:
    error = response.json()["error"]
    return response.status_code == status and error["code"] == code and bool(error["message"])


async def nothing_stored(account: NewAccount) -> bool:
    return not await Message.exists() and await ledger(account.account.id) == [GRANT]


@pytest.fixture
async def inbox(admin: Principal, clock: FrozenClock) -> Inbox:
    return await create_shared_inbox(
        actor=admin,
        name="Support",
        phone_number=INBOX_NUMBER,
        member_ids=[],
        region="US",
        clock=clock,
    )


@pytest.fixture
async def low_account(client: httpx.AsyncClient, account: NewAccount, inbox: Inbox) -> NewAccount:
    """1 SUBSCRIPTION credit left, after a 999-segment inbound; no PURCHASED credits."""
    response = await post(client, "/webhooks/inbound", inbound("SM-big", body="a" * 153 * 999))
    assert response.status_code == 200, response.text
    assert await buckets(account.account.id) == (1, 0)
    return account


async def send(admin: Principal, inbox: Inbox, runtime: Runtime, body: str) -> Message:
    sent = await send_message(
        actor=admin,
        inbox_id=inbox.id,
        to="+14155550123",
        body=body,
        idempotency_key=None,
        region="US",
        runtime=runtime,
    )
    assert sent.message.provider_message_id
    return sent.message


@pytest.fixture
async def split_send(
    low_account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime
) -> Message:
    """An outbound 3-segment message paid with 1 SUBSCRIPTION and 2 PURCHASED credits."""
    await set_payment_method(
        actor=admin, token="tok_visa", provider=runtime.payments, clock=runtime.clock
    )
    await buy_credits(
        actor=admin,
        credits=100,
        idempotency_key="buy-1",
        runtime=runtime,
    )
    message = await send(admin, inbox, runtime, "a" * 400)
    assert await buckets(low_account.account.id) == (0, 98)
    return message


# Inbound


async def test_inbound_is_received_and_charged_per_segment_from_subscription(
    client: httpx.AsyncClient, account: NewAccount, inbox: Inbox
) -> None:
    # given a `to` written the national way
    raw = inbound(body=TWO_UCS2_SEGMENTS, to="(415) 555-0100")
    # when
    response = await post(client, "/webhooks/inbound", raw)
    # then
    message = await Message.get(provider_message_id="SM1")
    assert response.status_code == 200
    assert response.json() == {"id": str(message.id), "duplicate": False}
    assert (message.direction, message.status, message.inbox_id) == (
        Direction.INBOUND,
        MessageStatus.RECEIVED,
        inbox.id,
    )
    assert (message.from_number, message.to_number, message.body) == (
        SENDER,
        INBOX_NUMBER,
        TWO_UCS2_SEGMENTS,
    )
    assert (message.encoding, message.segments, message.credits) == (Encoding.UCS2, 2, 2)
    charge = (LedgerEntryKind.INBOUND_MESSAGE, CreditBucket.SUBSCRIPTION, -2)
    assert await ledger(account.account.id) == [GRANT, charge]
    assert await buckets(account.account.id) == (998, 0)


async def test_a_repeated_provider_id_is_one_message_charged_once(
    client: httpx.AsyncClient, account: NewAccount, inbox: Inbox
) -> None:
    first = await post(client, "/webhooks/inbound", inbound())
    again = await post(client, "/webhooks/inbound", inbound())
    assert first.json()["duplicate"] is False
    assert again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "duplicate": True}
    assert await Message.all().count() == 1
    assert await buckets(account.account.id) == (999, 0)


async def test_concurrent_deliveries_of_one_message_store_and_charge_it_once(
    client: httpx.AsyncClient, account: NewAccount, inbox: Inbox
) -> None:
    responses = await asyncio.gather(
        *(post(client, "/webhooks/inbound", inbound()) for _ in range(20))
    )
    assert [r.status_code for r in responses] == [200] * 20
    assert [r.json()["duplicate"] for r in responses].count(False) == 1
    assert len({r.json()["id"] for r in responses}) == 1
    assert await Message.all().count() == 1
    assert await LedgerEntry.filter(kind=LedgerEntryKind.INBOUND_MESSAGE).count() == 1
    assert await buckets(account.account.id) == (999, 0)


async def test_inbound_past_zero_makes_purchased_negative(
    client: httpx.AsyncClient, low_account: NewAccount
) -> None:
    response = await post(client, "/webhooks/inbound", inbound("SM2", body="b" * 400))
    assert response.status_code == 200
    entries = await ledger(low_account.account.id)
    assert entries[-2:] == [
        (LedgerEntryKind.INBOUND_MESSAGE, CreditBucket.SUBSCRIPTION, -1),
        (LedgerEntryKind.INBOUND_MESSAGE, CreditBucket.PURCHASED, -2),
    ]
    assert await buckets(low_account.account.id) == (0, -2)


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        sign(b"another body"),
        sign(inbound(), secret="wrong-secret"),
        sign(inbound()).replace("sha256=", "sha1="),
        sign(inbound()).removeprefix("sha256="),
    ],
    ids=["missing", "empty", "bad", "other-body", "other-secret", "wrong-prefix", "no-prefix"],
)
async def test_a_bad_or_missing_signature_is_401_and_stores_nothing(
    client: httpx.AsyncClient, account: NewAccount, inbox: Inbox, signature: str | None
) -> None:
    response = await post(client, "/webhooks/inbound", inbound(), signature=signature)
    assert refused(response, 401, "INVALID_SIGNATURE")
    assert await nothing_stored(account)


async def test_an_upper_case_hex_signature_is_accepted(
    client: httpx.AsyncClient, account: NewAccount, inbox: Inbox
) -> None:
    signature = "sha256=" + sign(inbound()).removeprefix("sha256=").upper()
    response = await post(client, "/webhooks/inbound", inbound(), signature=signature)
    assert response.status_code == 200


def _without(name: str) -> bytes:
    payload = json.loads(inbound())
    del payload[name]
    return json.dumps(payload).encode()


def _with(name: str, value: object) -> bytes:
    return json.dumps({**json.loads(inbound()), name: value}).encode()


MALFORMED = {
    "not-json": b"{not json",
    "empty": b"",
    "array": b"[]",
    "string": b'"a string"',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "huge-int": b"1" * 5000,
    "no-from": _without("from"),
    "no-id": _without("providerMessageId"),
    "int-body": _with("body", 5),
    "null-to": _with("to", None),
    "list-from": _with("from", ["+14155550199"]),
    "empty-id": _with("providerMessageId", ""),
    "long-id": _with("providerMessageId", "x" * 129),
    "nul": _with("body", "nul \x00 char"),
    "surrogate": inbound().replace(b"hello", b"\\ud800"),
    "bad-utf8": inbound().replace(b"hello", b"\xff\xfe"),
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=list(MALFORMED))
async def test_malformed_input_is_400_and_stores_nothing(
    client: httpx.AsyncClient, account: NewAccount, inbox: Inbox, raw: bytes
) -> None:
    response = await post(client, "/webhooks/inbound", raw)
    assert refused(response, 400, "BAD_REQUEST")
    assert await nothing_stored(account)


async def test_an_empty_body_is_received_free(
    client: httpx.AsyncClient, account: NewAccount, inbox: Inbox
) -> None:
    response = await post(client, "/webhooks/inbound", inbound(body=""))
    assert response.status_code == 200
    assert (await Message.get(provider_message_id="SM1")).credits == 0
    assert await buckets(account.account.id) == (1000, 0)


@pytest.mark.parametrize("to", ["+14155550111", "not a number", ""])
async def test_a_to_number_no_inbox_has_is_404(
    client: httpx.AsyncClient, account: NewAccount, inbox: Inbox, to: str
) -> None:
    response = await post(client, "/webhooks/inbound", inbound(to=to))
    assert refused(response, 404, "NOT_FOUND")
    assert await nothing_stored(account)


async def test_a_body_over_the_limit_is_413(
    client: httpx.AsyncClient, account: NewAccount, inbox: Inbox
) -> None:
    raw = b" " * (MAX_BODY_BYTES + 1)
    response = await post(client, "/webhooks/inbound", raw)
    assert refused(response, 413, "PAYLOAD_TOO_LARGE")
    assert await nothing_stored(account)


async def test_a_chunked_body_over_the_limit_is_413(
    client: httpx.AsyncClient, account: NewAccount, inbox: Inbox
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 4096 + 1):
            yield b" " * 4096

    response = await client.post("/webhooks/inbound", content=chunks())
    assert "content-length" not in response.request.headers
    assert refused(response, 413, "PAYLOAD_TOO_LARGE")
    assert await nothing_stored(account)


# Delivery status


async def test_delivered_marks_the_message_delivered(
    client: httpx.AsyncClient,
    account: NewAccount,
    admin: Principal,
    inbox: Inbox,
    runtime: Runtime,
) -> None:
    message = await send(admin, inbox, runtime, "hi")
    response = await report(client, str(message.provider_message_id), "delivered")
    assert response.status_code == 200
    assert response.json() == {"id": str(message.id), "status": "DELIVERED"}
    assert (await Message.get(id=message.id)).status is MessageStatus.DELIVERED
    assert await buckets(account.account.id) == (999, 0)


async def test_failed_refunds_to_the_buckets_the_credits_came_from(
    client: httpx.AsyncClient, split_send: Message
) -> None:
    response = await report(client, str(split_send.provider_message_id), "failed")
    assert response.json() == {"id": str(split_send.id), "status": "FAILED"}
    refunds = await ledger(split_send.account_id)
    assert refunds[-2:] == [
        (LedgerEntryKind.REFUND, CreditBucket.SUBSCRIPTION, 1),
        (LedgerEntryKind.REFUND, CreditBucket.PURCHASED, 2),
    ]
    assert await buckets(split_send.account_id) == (1, 100)


async def test_repeated_or_late_reports_change_nothing(
    client: httpx.AsyncClient, split_send: Message
) -> None:
    provider_id = str(split_send.provider_message_id)
    await report(client, provider_id, "failed")
    entries = await ledger(split_send.account_id)
    for status in ("failed", "delivered"):
        response = await report(client, provider_id, status)
        assert response.json() == {"id": str(split_send.id), "status": "FAILED"}
    assert await ledger(split_send.account_id) == entries
    assert await buckets(split_send.account_id) == (1, 100)


async def test_failed_after_the_month_ended_refunds_only_purchased_credits(
    client: httpx.AsyncClient, split_send: Message, clock: FrozenClock
) -> None:
    clock.advance(timedelta(days=40))
    response = await report(client, str(split_send.provider_message_id), "failed")
    assert response.json()["status"] == "FAILED"
    entries = await ledger(split_send.account_id)
    assert entries[-2:] == [GRANT, (LedgerEntryKind.REFUND, CreditBucket.PURCHASED, 2)]
    assert await buckets(split_send.account_id) == (1000, 100)


async def test_an_unknown_provider_id_is_404(
    client: httpx.AsyncClient, account: NewAccount
) -> None:
    response = await report(client, "SM-nope", "delivered")
    assert refused(response, 404, "NOT_FOUND")


@pytest.mark.parametrize("status", ["DELIVERED", "sent", "", "undelivered"])
async def test_another_status_is_400(
    client: httpx.AsyncClient, split_send: Message, status: str
) -> None:
    response = await report(client, str(split_send.provider_message_id), status)
    assert refused(response, 400, "BAD_REQUEST")
    assert (await Message.get(id=split_send.id)).status is MessageStatus.SENT


async def test_a_malformed_status_report_is_400(
    client: httpx.AsyncClient, split_send: Message
) -> None:
    raw = json.dumps({"providerMessageId": split_send.provider_message_id, "status": 1}).encode()
    response = await post(client, "/webhooks/status", raw)
    assert refused(response, 400, "BAD_REQUEST")
    assert (await Message.get(id=split_send.id)).status is MessageStatus.SENT


async def test_a_badly_signed_status_is_401_and_changes_nothing(
    client: httpx.AsyncClient, split_send: Message
) -> None:
    raw = json.dumps({"providerMessageId": split_send.provider_message_id, "status": "failed"})
    response = await post(client, "/webhooks/status", raw.encode(), signature=sign(b"{}"))
    assert refused(response, 401, "INVALID_SIGNATURE")
    assert (await Message.get(id=split_send.id)).status is MessageStatus.SENT
