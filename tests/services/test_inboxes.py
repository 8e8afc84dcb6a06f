from __future__ import annotations

import pytest

from models import Inbox, Member
from models.enums import InboxKind, Role
from services.access import Principal
from services.accounts import create_account
from services.clock import FrozenClock
from services.errors import AlreadyExists, NotFound
from services.inboxes import create_shared_inbox, may_send_from, members_of_inboxes, visible_inboxes
from services.members import create_member

pytestmark = pytest.mark.usefixtures("db")


async def member(admin: Principal, clock: FrozenClock, email: str, phone: str | None) -> Principal:
    row = await create_member(
        actor=admin,
        name=email.split("@")[0],
        email=email,
        role=Role.MEMBER,
        personal_phone_number=phone,
        region="US",
        clock=clock,
    )
    return Principal(admin.account_id, row.id, Role.MEMBER, token_id=0)


async def shared(admin: Principal, clock: FrozenClock, phone: str, ids: list[int]) -> Inbox:
    return await create_shared_inbox(
        actor=admin, name="Front desk", phone_number=phone, member_ids=ids, region="US", clock=clock
    )


async def test_shared_inbox_lists_its_members(admin: Principal, clock: FrozenClock) -> None:
    ben = await member(admin, clock, "ben@acme.example", None)
    inbox = await shared(admin, clock, "+1 415 555 0100", [ben.member_id])
    assert inbox.kind is InboxKind.SHARED
    assert await members_of_inboxes([inbox.id]) == {inbox.id: [ben.member_id]}


async def test_a_member_of_another_account_is_not_found(
    admin: Principal, clock: FrozenClock
) -> None:
    other = await create_account(name="B", admin_name="B", admin_email="b@b.example", clock=clock)
    with pytest.raises(NotFound) as caught:
        await shared(admin, clock, "+1 415 555 0100", [other.admin.id])
    assert caught.value.field == "member_ids"
    assert not await Inbox.exists()


async def test_inbox_numbers_are_unique_across_accounts(
    admin: Principal, clock: FrozenClock
) -> None:
    await shared(admin, clock, "+1 415 555 0100", [])
    other = await create_account(name="B", admin_name="B", admin_email="b@b.example", clock=clock)
    other_admin = Principal(other.account.id, other.admin.id, Role.ADMIN, token_id=0)
    with pytest.raises(AlreadyExists):
        await shared(other_admin, clock, "4155550100", [])


async def test_a_member_sees_its_personal_and_granted_shared_inboxes(
    admin: Principal, clock: FrozenClock
) -> None:
    ben = await member(admin, clock, "ben@acme.example", "+1 415 555 0101")
    cleo = await member(admin, clock, "cleo@acme.example", "+1 415 555 0102")
    desk = await shared(admin, clock, "+1 415 555 0100", [ben.member_id])
    await shared(admin, clock, "+1 415 555 0103", [cleo.member_id])
    seen = {i.phone_number for i in await visible_inboxes(ben)}
    assert seen == {"+14155550101", desk.phone_number}
    assert len(await visible_inboxes(admin)) == 4


async def test_who_may_send_from_an_inbox(admin: Principal, clock: FrozenClock) -> None:
    ben = await member(admin, clock, "ben@acme.example", "+1 415 555 0101")
    cleo = await member(admin, clock, "cleo@acme.example", None)
    desk = await shared(admin, clock, "+1 415 555 0100", [cleo.member_id])
    bens = await Inbox.get(owner_id=ben.member_id)
    assert await may_send_from(ben, bens)
    assert not await may_send_from(cleo, bens)
    assert await may_send_from(cleo, desk)
    assert not await may_send_from(ben, desk)
    assert await may_send_from(admin, bens)
    assert await may_send_from(admin, desk)
    assert await Member.filter(account_id=admin.account_id).count() == 3
