from __future__ import annotations

import pytest

from models import Inbox, Member
from models.enums import InboxKind, Role
from services.access import Principal
from services.clock import FrozenClock
from services.errors import AlreadyExists, Forbidden, InvalidPhoneNumber, InvalidValue
from services.members import create_member

pytestmark = pytest.mark.usefixtures("db")


async def add(
    actor: Principal,
    clock: FrozenClock,
    *,
    email: str = "ben@acme.example",
    phone: str | None = None,
    role: Role = Role.MEMBER,
) -> Member:
    return await create_member(
        actor=actor,
        name="Ben",
        email=email,
        role=role,
        personal_phone_number=phone,
        region="US",
        clock=clock,
    )


async def test_member_with_a_number_gets_a_personal_inbox_in_e164(
    admin: Principal, clock: FrozenClock
) -> None:
    member = await add(admin, clock, phone="(415) 555-0199")
    inbox = await Inbox.get(owner_id=member.id)
    assert (inbox.kind, inbox.phone_number) == (InboxKind.PERSONAL, "+14155550199")


async def test_duplicate_email_ignores_case(admin: Principal, clock: FrozenClock) -> None:
    await add(admin, clock, email="ben@acme.example")
    with pytest.raises(AlreadyExists) as caught:
        await add(admin, clock, email="BEN@Acme.Example")
    assert caught.value.field == "email"


async def test_the_same_email_may_join_another_account(
    admin: Principal, clock: FrozenClock
) -> None:
    from services.accounts import create_account

    other = await create_account(
        name="Other", admin_name="O", admin_email="ben@acme.example", clock=clock
    )
    assert other.admin.email == "ben@acme.example"


async def test_invalid_email_is_invalid_value(admin: Principal, clock: FrozenClock) -> None:
    with pytest.raises(InvalidValue) as caught:
        await add(admin, clock, email="ben@")
    assert caught.value.field == "email"


@pytest.mark.parametrize("phone", ["12", "+1 555 0100", "not a number", "+999 1234"])
async def test_invalid_personal_number_stores_no_member(
    admin: Principal, clock: FrozenClock, phone: str
) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        await add(admin, clock, phone=phone)
    assert caught.value.field == "personal_phone_number"
    assert not await Member.exists(email_key="ben@acme.example")


async def test_a_number_taken_in_another_format_already_exists(
    admin: Principal, clock: FrozenClock
) -> None:
    await add(admin, clock, email="a@acme.example", phone="+1 415-555-0199")
    with pytest.raises(AlreadyExists) as caught:
        await add(admin, clock, email="b@acme.example", phone="415.555.0199")
    assert caught.value.field == "personal_phone_number"
    assert not await Member.exists(email_key="b@acme.example")


async def test_a_member_cannot_add_members(admin: Principal, clock: FrozenClock) -> None:
    ben = await add(admin, clock)
    as_ben = Principal(admin.account_id, ben.id, Role.MEMBER, token_id=0)
    with pytest.raises(Forbidden):
        await add(as_ben, clock, email="eve@acme.example")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Nul\x00", id="nul"),
        pytest.param("\udc80", id="lone-surrogate"),
        pytest.param("Two\nlines", id="newline"),
        pytest.param("Tab\there", id="tab"),
        pytest.param("Esc\x1b[31m", id="escape"),
        pytest.param("C1\x85name", id="c1-control"),
    ],
)
async def test_a_name_with_control_characters_or_unstorable_text_is_invalid(
    admin: Principal, clock: FrozenClock, name: str
) -> None:
    with pytest.raises(InvalidValue):
        await create_member(
            actor=admin,
            name=name,
            email="x@acme.example",
            role=Role.MEMBER,
            personal_phone_number=None,
            region="US",
            clock=clock,
        )
    assert not await Member.exists(email_key="x@acme.example")


async def test_an_invalid_phone_number_is_quoted_briefly(
    admin: Principal, clock: FrozenClock
) -> None:
    with pytest.raises(InvalidPhoneNumber) as refused:
        await create_member(
            actor=admin,
            name="Long",
            email="long@acme.example",
            role=Role.MEMBER,
            personal_phone_number="5" * 100_000,
            region="US",
            clock=clock,
        )
    assert len(refused.value.message) < 100
