"""Sending, receiving and refunding messages: what each costs and what it leaves in the ledger."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models import Inbox, LedgerEntry, Message
from models.enums import CreditBucket, Direction, LedgerEntryKind, MessageStatus, Role
from services.access import Principal
from services.accounts import NewAccount
from services.carrier import CarrierRejected
from services.clock import FrozenClock
from services.errors import (
    BodyTooLong,
    EmptyBody,
    Forbidden,
    InsufficientCredits,
    InvalidPhoneNumber,
    InvalidValue,
    NotFound,
    TallyError,
)
from services.members import create_member
from services.runtime import Runtime
from tests.services.conftest import (
    REGION,
    Buckets,
    assert_ledger_balances,
    body_of,
    buckets,
    buy,
    ledger,
    open_shop,
    receive,
    report,
    send,
)

SUB, PUR = CreditBucket.SUBSCRIPTION, CreditBucket.PURCHASED
REFUND = LedgerEntryKind.REFUND

pytestmark = pytest.mark.usefixtures("db")


class RejectingCarrier:
    async def send(self, *, from_number: str, to_number: str, body: str) -> str:
        raise CarrierRejected("unreachable handset")


async def refunds(message: Message) -> list[tuple[CreditBucket, int]]:
    rows = await LedgerEntry.filter(message_id=message.id, kind=REFUND).order_by("id")
    return [(e.bucket, e.credits) for e in rows]


# Sending


@pytest.mark.parametrize(
    ("body", "credits"),
    [("Hello", 1), (body_of(1), 1), (body_of(1) + "a", 2), (body_of(3), 3), ("Hi 👋", 1)],
)
async def test_a_send_costs_one_credit_per_segment(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, body: str, credits: int
) -> None:
    # when
    sent = await send(runtime, admin, inbox, body)
    # then
    assert (sent.message.segments, sent.message.credits) == (credits, credits)
    assert sent.balance.total == 1000 - credits
    entry = await LedgerEntry.get(message_id=sent.message.id)
    assert (entry.kind, entry.bucket, entry.credits) == (
        LedgerEntryKind.OUTBOUND_MESSAGE,
        SUB,
        -credits,
    )
    assert await buckets(account.account.id) == Buckets(1000 - credits, 0)


async def test_a_send_the_total_exactly_covers_succeeds_and_leaves_zero(runtime: Runtime) -> None:
    # given 3 credits
    shop = await open_shop(runtime, monthly_credits=3)
    # when a 3-credit message is sent
    sent = await send(runtime, shop.actor, shop.inbox, body_of(3))
    # then
    assert sent.balance.total == 0
    assert await buckets(shop.id) == Buckets(0, 0)


async def test_a_send_the_total_cannot_cover_is_insufficient_and_stores_nothing(
    runtime: Runtime,
) -> None:
    # given 2 credits
    shop = await open_shop(runtime, monthly_credits=2)
    # when a 3-credit message is sent
    with pytest.raises(InsufficientCredits) as caught:
        await send(runtime, shop.actor, shop.inbox, body_of(3))
    # then nothing was stored and the balance is as it was
    assert caught.value.code == "INSUFFICIENT_CREDITS"
    assert await Message.filter(account_id=shop.id).count() == 0
    assert [e.kind for e in await ledger(shop.id)] == [LedgerEntryKind.ALLOTMENT_GRANT]
    assert await buckets(shop.id) == Buckets(2, 0)


@pytest.mark.parametrize("body", ["", " ", "\n\t  "])
async def test_an_empty_or_blank_body_is_empty_body(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, body: str
) -> None:
    with pytest.raises(EmptyBody) as caught:
        await send(runtime, admin, inbox, body)
    assert (caught.value.code, caught.value.field) == ("EMPTY_BODY", "body")
    await assert_nothing_sent(account)


async def test_a_body_over_1600_characters_is_too_long(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    with pytest.raises(BodyTooLong) as caught:
        await send(runtime, admin, inbox, "a" * 1601)
    assert (caught.value.code, caught.value.field) == ("BODY_TOO_LONG", "body")
    await assert_nothing_sent(account)


async def test_a_body_of_exactly_1600_characters_is_sent(
    admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    sent = await send(runtime, admin, inbox, "a" * 1600)
    assert sent.message.credits == 11


@pytest.mark.parametrize("to", ["12", "not a number", "+1 555 0100"])
async def test_an_invalid_number_is_refused(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, to: str
) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        await send(runtime, admin, inbox, "Hello", to=to)
    assert caught.value.field == "to"
    await assert_nothing_sent(account)


async def test_an_inbox_of_another_account_is_not_found(
    account: NewAccount, admin: Principal, runtime: Runtime
) -> None:
    # given an inbox of another account
    other = await open_shop(runtime, monthly_credits=1000, number="+14155550177")
    # when our admin sends from it
    with pytest.raises(NotFound) as caught:
        await send(runtime, admin, other.inbox, "Hello")
    # then
    assert caught.value.field == "inbox_id"
    await assert_nothing_sent(account)
    assert await buckets(other.id) == Buckets(1000, 0)


async def test_a_member_without_access_to_the_inbox_is_forbidden(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given a member who is not listed on the shared inbox
    ben = await create_member(
        actor=admin,
        name="Ben",
        email="ben@acme.example",
        role=Role.MEMBER,
        personal_phone_number="+14155550188",
        region=REGION,
        clock=clock,
    )
    as_ben = Principal(admin.account_id, ben.id, Role.MEMBER, token_id=0)
    # when he sends from it
    with pytest.raises(Forbidden):
        await send(runtime, as_ben, inbox, "Hello")
    # then nothing was charged, while his own inbox works
    await assert_nothing_sent(account)
    personal = await Inbox.get(owner_id=ben.id)
    assert (await send(runtime, as_ben, personal, "Hello")).message.sender_id == ben.id


async def test_the_carrier_gives_a_provider_id_and_the_message_is_sent(
    admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    # when
    sent = await send(runtime, admin, inbox, "Hello", to="(415) 555-0123")
    # then
    row = await Message.get(id=sent.message.id)
    assert row.status is MessageStatus.SENT
    assert row.provider_message_id
    assert row.provider_message_id == sent.message.provider_message_id
    assert (row.direction, row.to_number, row.from_number) == (
        Direction.OUTBOUND,
        "+14155550123",
        inbox.phone_number,
    )


async def test_a_message_the_carrier_rejects_fails_and_is_refunded(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    # given a carrier that rejects everything
    runtime.carrier = RejectingCarrier()
    # when
    sent = await send(runtime, admin, inbox, body_of(2))
    # then
    assert sent.message.status is MessageStatus.FAILED
    assert sent.balance.total == 1000
    assert await refunds(sent.message) == [(SUB, 2)]
    assert await buckets(account.account.id) == Buckets(1000, 0)
    await assert_ledger_balances(account.account.id)


async def assert_nothing_sent(account: NewAccount) -> None:
    assert await Message.filter(account_id=account.account.id).count() == 0
    assert len(await ledger(account.account.id)) == 1
    assert await buckets(account.account.id) == Buckets(1000, 0)


# Receiving


async def test_an_inbound_message_is_received_and_charged_per_segment(
    account: NewAccount, inbox: Inbox, runtime: Runtime
) -> None:
    # when
    received = await receive(runtime, inbox, body_of(2))
    # then
    assert not received.duplicate
    row = await Message.get(id=received.message.id)
    assert (row.direction, row.status, row.credits) == (
        Direction.INBOUND,
        MessageStatus.RECEIVED,
        2,
    )
    entry = await LedgerEntry.get(message_id=row.id)
    assert (entry.kind, entry.bucket, entry.credits) == (LedgerEntryKind.INBOUND_MESSAGE, SUB, -2)
    assert await buckets(account.account.id) == Buckets(998, 0)


async def test_inbound_past_zero_makes_purchased_negative(runtime: Runtime) -> None:
    # given 3 subscription credits and nothing purchased
    shop = await open_shop(runtime, monthly_credits=3)
    # when an 8-credit message comes in
    received = await receive(runtime, shop.inbox, body_of(8))
    # then it is accepted: SUBSCRIPTION pays 3, PURCHASED goes to -5
    entries = await LedgerEntry.filter(message_id=received.message.id).order_by("id")
    assert [(e.bucket, e.credits, e.balance_after) for e in entries] == [
        (SUB, -3, 0),
        (PUR, -5, -5),
    ]
    assert await buckets(shop.id) == Buckets(0, -5)


async def test_inbound_with_no_credits_at_all_is_still_accepted(runtime: Runtime) -> None:
    shop = await open_shop(runtime, monthly_credits=0)
    await receive(runtime, shop.inbox, "one")
    await receive(runtime, shop.inbox, "two")
    assert await buckets(shop.id) == Buckets(0, -2)
    await assert_ledger_balances(shop.id)


async def test_the_next_purchase_pays_off_a_negative_purchased_balance_first(
    runtime: Runtime,
) -> None:
    # given PURCHASED at -5
    shop = await open_shop(runtime, monthly_credits=0, token="tok_visa")
    await receive(runtime, shop.inbox, body_of(5))
    # when 100 credits are bought
    purchase = await buy(runtime, shop.actor, 100)
    # then the debt is paid first: 95 are left
    assert purchase.balance.purchased == 95
    assert (purchase.entry.credits, purchase.entry.balance_after) == (100, 95)
    assert await buckets(shop.id) == Buckets(0, 95)
    # and an outbound send can use them
    assert (await send(runtime, shop.actor, shop.inbox, body_of(2))).balance.purchased == 93


async def test_a_repeated_provider_message_id_is_a_duplicate_charged_once(
    account: NewAccount, inbox: Inbox, runtime: Runtime
) -> None:
    first = await receive(runtime, inbox, "Hi", provider_id="SM-1")
    again = await receive(runtime, inbox, "Hi", provider_id="SM-1")
    assert (again.duplicate, again.message.id) == (True, first.message.id)
    assert await Message.filter(account_id=account.account.id).count() == 1
    assert await buckets(account.account.id) == Buckets(999, 0)


async def test_inbound_to_an_unknown_number_is_not_found(runtime: Runtime, inbox: Inbox) -> None:
    unknown = await Inbox.get(id=inbox.id)
    unknown.phone_number = "+14155550999"
    with pytest.raises(NotFound):
        await receive(runtime, unknown, "Hi")
    assert await Message.all().count() == 0


# Refunds (delivery reports)


async def test_a_failed_message_is_refunded_to_the_buckets_it_came_from(
    runtime: Runtime, clock: FrozenClock
) -> None:
    # given a 3-credit message paid 2 from SUBSCRIPTION and 1 from PURCHASED
    shop = await open_shop(runtime, monthly_credits=2, purchased=100)
    sent = await send(runtime, shop.actor, shop.inbox, body_of(3))
    # when the carrier reports it failed
    message = await report(runtime, sent.message, delivered=False)
    # then each bucket gets back what it paid
    assert (message.status, message.refunded_at) == (MessageStatus.FAILED, clock.now())
    assert await refunds(sent.message) == [(SUB, 2), (PUR, 1)]
    assert await buckets(shop.id) == Buckets(2, 100)
    await assert_ledger_balances(shop.id)


async def test_subscription_credits_of_an_ended_period_are_not_refunded(
    runtime: Runtime, clock: FrozenClock
) -> None:
    # given a message paid 2 from SUBSCRIPTION and 1 from PURCHASED, then a new month
    shop = await open_shop(runtime, monthly_credits=2, purchased=100)
    sent = await send(runtime, shop.actor, shop.inbox, body_of(3))
    clock.advance(timedelta(days=31))
    # when it fails
    await report(runtime, sent.message, delivered=False)
    # then only the PURCHASED credit comes back; the old month's credits would have expired
    assert await refunds(sent.message) == [(PUR, 1)]
    assert await buckets(shop.id) == Buckets(2, 100)
    await assert_ledger_balances(shop.id)


async def test_repeated_failure_reports_change_nothing(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    # given a failed, refunded message
    sent = await send(runtime, admin, inbox, body_of(2))
    await report(runtime, sent.message, delivered=False)
    entries = len(await ledger(account.account.id))
    # when the report comes again
    again = await report(runtime, sent.message, delivered=False)
    # then
    assert again.status is MessageStatus.FAILED
    assert len(await ledger(account.account.id)) == entries
    assert await buckets(account.account.id) == Buckets(1000, 0)


async def test_a_failure_after_delivery_changes_nothing(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    sent = await send(runtime, admin, inbox, body_of(2))
    assert (await report(runtime, sent.message, delivered=True)).status is MessageStatus.DELIVERED
    late = await report(runtime, sent.message, delivered=False)
    assert late.status is MessageStatus.DELIVERED
    assert await refunds(sent.message) == []
    assert await buckets(account.account.id) == Buckets(998, 0)


async def test_a_report_for_an_unknown_provider_id_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(TallyError) as caught:
        await report(runtime, Message(provider_message_id="SM-nope"), delivered=False)
    assert caught.value.code == "NOT_FOUND"


async def test_a_refund_belongs_to_the_month_of_the_charge_it_returns(
    runtime: Runtime, clock: FrozenClock
) -> None:
    # given a message paid from PURCHASED in one month, failing in the next
    shop = await open_shop(runtime, monthly_credits=0, purchased=100)
    sent = await send(runtime, shop.actor, shop.inbox, body_of(3))
    charge = await LedgerEntry.get(
        message_id=sent.message.id, kind=LedgerEntryKind.OUTBOUND_MESSAGE
    )
    clock.advance(timedelta(days=31))
    # when it fails
    await report(runtime, sent.message, delivered=False)
    # then the refund nets out in the month of the charge, not in the new month
    refund = await LedgerEntry.get(message_id=sent.message.id, kind=LedgerEntryKind.REFUND)
    assert (charge.period_index, refund.period_index) == (0, 0)
    assert (refund.bucket, refund.credits) == (CreditBucket.PURCHASED, 3)


async def test_a_duplicate_is_recognised_even_after_the_inbox_number_changed(
    account: NewAccount, inbox: Inbox, runtime: Runtime
) -> None:
    # given an inbound message, then the inbox's number changes
    first = await receive(runtime, inbox, "Hi", provider_id="SM-moved")
    await Inbox.filter(id=inbox.id).update(phone_number="+14155550998")
    # when the carrier retries the same delivery to the old number
    again = await receive(runtime, inbox, "Hi", provider_id="SM-moved")
    # then it is the same message, charged once
    assert (again.duplicate, again.message.id) == (True, first.message.id)
    assert await Message.filter(account_id=account.account.id).count() == 1


@pytest.mark.parametrize("body", ["a\x00b", "broken \ud800 surrogate"])
async def test_text_no_database_can_store_is_an_invalid_value(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, body: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        await send(runtime, admin, inbox, body)
    assert caught.value.field == "body"
    assert await Message.all().count() == 0
