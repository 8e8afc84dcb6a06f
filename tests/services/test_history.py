"""Message and ledger pages: order, keyset positions, filters, and who sees what."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models import Inbox, LedgerEntry, Message
from models.enums import Direction, LedgerEntryKind, Role
from services.access import Principal
from services.accounts import NewAccount, create_account
from services.clock import FrozenClock
from services.errors import NotFound
from services.history import (
    MessagePosition,
    inboxes_by_ids,
    ledger_page,
    message_page,
    messages_by_ids,
)
from services.inboxes import create_shared_inbox
from services.members import create_member
from services.messaging import receive_message, send_message
from services.runtime import Runtime
from tests.conftest import START


async def shared(actor: Principal, clock: FrozenClock, number: str) -> Inbox:
    return await create_shared_inbox(
        actor=actor, name="Desk", phone_number=number, member_ids=[], region="US", clock=clock
    )


async def send(runtime: Runtime, actor: Principal, inbox: Inbox, body: str = "Hi") -> Message:
    sent = await send_message(
        actor=actor,
        inbox_id=inbox.id,
        to="+14155550123",
        body=body,
        idempotency_key=None,
        region="US",
        runtime=runtime,
    )
    return sent.message


async def receive(runtime: Runtime, inbox: Inbox, provider_id: str) -> Message:
    result = await receive_message(
        from_number="+14155550123",
        to_number=inbox.phone_number,
        body="Hello back",
        provider_message_id=provider_id,
        region="US",
        runtime=runtime,
    )
    return result.message


@pytest.fixture
async def desk(admin: Principal, clock: FrozenClock) -> Inbox:
    return await shared(admin, clock, "+14155550100")


@pytest.fixture
async def member(admin: Principal, clock: FrozenClock) -> Principal:
    row = await create_member(
        actor=admin,
        name="Ben",
        email="ben@acme.example",
        role=Role.MEMBER,
        personal_phone_number="+14155550101",
        region="US",
        clock=clock,
    )
    return Principal(account_id=row.account_id, member_id=row.id, role=Role.MEMBER, token_id=0)


async def test_messages_come_newest_first_with_the_id_breaking_ties(
    admin: Principal, desk: Inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given two messages at one instant, then one a second later
    a = await send(runtime, admin, desk)
    b = await send(runtime, admin, desk)
    clock.advance(timedelta(seconds=1))
    c = await send(runtime, admin, desk)

    # when
    page = await message_page(actor=admin, first=10)

    # then
    assert [m.id for m in page.rows] == [c.id, b.id, a.id]
    assert page.has_next is False


async def test_a_message_page_continues_strictly_after_its_position(
    admin: Principal, desk: Inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given
    a = await send(runtime, admin, desk)
    b = await send(runtime, admin, desk)
    clock.advance(timedelta(microseconds=1))
    c = await send(runtime, admin, desk)

    # when
    first = await message_page(actor=admin, first=2)
    last = first.rows[-1]
    rest = await message_page(
        actor=admin, first=2, after=MessagePosition(created_at=last.created_at, id=last.id)
    )

    # then
    assert ([m.id for m in first.rows], first.has_next) == ([c.id, b.id], True)
    assert ([m.id for m in rest.rows], rest.has_next) == ([a.id], False)


async def test_a_span_is_half_open(
    admin: Principal, desk: Inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given messages at START and at START + 1h
    at_start = await send(runtime, admin, desk)
    clock.advance(timedelta(hours=1))
    await send(runtime, admin, desk)

    # when
    page = await message_page(actor=admin, first=10, span=(START, START + timedelta(hours=1)))

    # then
    assert [m.id for m in page.rows] == [at_start.id]


async def test_messages_filter_by_direction(
    admin: Principal, desk: Inbox, runtime: Runtime
) -> None:
    await send(runtime, admin, desk)
    inbound = await receive(runtime, desk, "in-1")
    page = await message_page(actor=admin, first=10, direction=Direction.INBOUND)
    assert [m.id for m in page.rows] == [inbound.id]


async def test_a_member_sees_the_messages_of_its_own_inboxes_only(
    admin: Principal, member: Principal, desk: Inbox, runtime: Runtime
) -> None:
    # given
    personal = await Inbox.get(owner_id=member.member_id)
    own = await send(runtime, member, personal)
    await send(runtime, admin, desk)

    # when
    as_member = await message_page(actor=member, first=10)
    as_admin = await message_page(actor=admin, first=10)

    # then
    assert [m.id for m in as_member.rows] == [own.id]
    assert len(as_admin.rows) == 2


async def test_a_member_without_inboxes_sees_no_messages(
    admin: Principal, desk: Inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    row = await create_member(
        actor=admin,
        name="Cy",
        email="cy@acme.example",
        role=Role.MEMBER,
        personal_phone_number=None,
        region="US",
        clock=clock,
    )
    await send(runtime, admin, desk)
    nobody = Principal(account_id=row.account_id, member_id=row.id, role=Role.MEMBER, token_id=0)
    page = await message_page(actor=nobody, first=10)
    assert (list(page.rows), page.has_next) == ([], False)


async def test_an_inbox_the_actor_cannot_see_is_not_found(
    admin: Principal, member: Principal, desk: Inbox, clock: FrozenClock
) -> None:
    # given an inbox of another account
    other: NewAccount = await create_account(
        name="B", admin_name="B", admin_email="b@b.example", clock=clock
    )
    other_admin = Principal(other.account.id, other.admin.id, Role.ADMIN, other.token.token.id)
    foreign = await shared(other_admin, clock, "+14155550199")

    # then
    with pytest.raises(NotFound) as hidden:
        await message_page(actor=member, first=10, inbox_id=desk.id)
    assert hidden.value.field == "inbox_id"
    with pytest.raises(NotFound):
        await message_page(actor=admin, first=10, inbox_id=foreign.id)


async def test_an_inbox_filter_selects_that_inbox(
    admin: Principal, member: Principal, desk: Inbox, runtime: Runtime
) -> None:
    personal = await Inbox.get(owner_id=member.member_id)
    await send(runtime, admin, personal)
    at_desk = await send(runtime, admin, desk)
    page = await message_page(actor=admin, first=10, inbox_id=desk.id)
    assert [m.id for m in page.rows] == [at_desk.id]


async def test_ledger_pages_follow_commit_order_backwards(
    admin: Principal, account: NewAccount, desk: Inbox, runtime: Runtime
) -> None:
    # given the grant and three sends
    for _ in range(3):
        await send(runtime, admin, desk)
    ids = [e.id for e in await LedgerEntry.filter(account_id=account.account.id).order_by("-id")]

    # when
    first = await ledger_page(account_id=account.account.id, first=2)
    rest = await ledger_page(account_id=account.account.id, first=2, after=first.rows[-1].id)

    # then
    assert ([e.id for e in first.rows], first.has_next) == (ids[:2], True)
    assert ([e.id for e in rest.rows], rest.has_next) == (ids[2:], False)


async def test_ledger_filters_by_kind_and_span(
    admin: Principal, account: NewAccount, desk: Inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given the grant at START and a send a day later
    clock.advance(timedelta(days=1))
    await send(runtime, admin, desk)
    account_id = account.account.id

    # when
    grants = await ledger_page(
        account_id=account_id, first=10, kinds=[LedgerEntryKind.ALLOTMENT_GRANT]
    )
    no_kinds = await ledger_page(account_id=account_id, first=10, kinds=[])
    later = await ledger_page(
        account_id=account_id,
        first=10,
        span=(START + timedelta(hours=1), START + timedelta(days=2)),
    )

    # then
    assert [e.kind for e in grants.rows] == [LedgerEntryKind.ALLOTMENT_GRANT]
    assert list(no_kinds.rows) == []
    assert [e.kind for e in later.rows] == [LedgerEntryKind.OUTBOUND_MESSAGE]


async def test_ledger_pages_never_show_another_account(
    account: NewAccount, clock: FrozenClock
) -> None:
    await create_account(name="B", admin_name="B", admin_email="b@b.example", clock=clock)
    page = await ledger_page(account_id=account.account.id, first=10)
    assert {e.account_id for e in page.rows} == {account.account.id}


async def test_rows_by_ids_skip_unknown_ids(
    admin: Principal, desk: Inbox, runtime: Runtime
) -> None:
    message = await send(runtime, admin, desk)
    assert list(await messages_by_ids([message.id, 999_999])) == [message.id]
    assert list(await inboxes_by_ids([desk.id, 999_999])) == [desk.id]
