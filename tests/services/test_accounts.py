from __future__ import annotations

import pytest

from models import ApiToken, Inbox, Member
from models.enums import Role, WeekStart
from services.access import Principal
from services.accounts import NewAccount, create_account, update_account
from services.clock import FrozenClock
from services.errors import Forbidden, InvalidValue
from services.members import create_member

pytestmark = pytest.mark.usefixtures("db")


async def test_new_account_has_one_admin_and_a_working_token(account: NewAccount) -> None:
    members = await Member.filter(account_id=account.account.id)
    assert [(m.email, m.role) for m in members] == [("ada@acme.example", Role.ADMIN)]
    token = await ApiToken.get(id=account.token.token.id)
    assert token.secret_hash != account.token.secret
    assert account.token.secret not in token.secret_hash


async def test_account_creation_instant_comes_from_the_clock(
    account: NewAccount, clock: FrozenClock
) -> None:
    assert account.account.created_at == clock.now()


async def test_unknown_timezone_is_invalid_and_creates_nothing(clock: FrozenClock) -> None:
    with pytest.raises(InvalidValue) as caught:
        await create_account(
            name="X",
            admin_name="Y",
            admin_email="y@x.example",
            timezone="Mars/Olympus",
            clock=clock,
        )
    assert caught.value.field == "timezone"
    assert await Member.all().count() == 0


async def test_invalid_admin_email_rolls_back_the_account(clock: FrozenClock) -> None:
    with pytest.raises(InvalidValue):
        await create_account(name="X", admin_name="Y", admin_email="not-an-email", clock=clock)
    assert await Member.all().count() == 0
    assert await ApiToken.all().count() == 0


async def test_admin_updates_name_timezone_and_week_start(
    admin: Principal, clock: FrozenClock
) -> None:
    updated = await update_account(
        actor=admin,
        name="  Acme Corp ",
        timezone="Asia/Kolkata",
        week_start=WeekStart.SUNDAY,
        clock=clock,
    )
    assert (updated.name, updated.timezone, updated.week_start) == (
        "Acme Corp",
        "Asia/Kolkata",
        WeekStart.SUNDAY,
    )


async def test_update_with_nothing_set_changes_nothing(
    admin: Principal, clock: FrozenClock
) -> None:
    updated = await update_account(actor=admin, clock=clock)
    assert (updated.name, updated.timezone) == ("Acme", "America/New_York")


async def test_update_rejects_an_unknown_timezone_without_changing_the_name(
    admin: Principal, clock: FrozenClock
) -> None:
    with pytest.raises(InvalidValue):
        await update_account(actor=admin, name="New name", timezone="Europe/Atlantis", clock=clock)
    member = await Member.get(id=admin.member_id).prefetch_related("account")
    assert member.account.name == "Acme"


async def test_a_member_cannot_change_the_account(admin: Principal, clock: FrozenClock) -> None:
    row = await create_member(
        actor=admin,
        name="Ben",
        email="ben@acme.example",
        role=Role.MEMBER,
        personal_phone_number=None,
        region="US",
        clock=clock,
    )
    member = Principal(admin.account_id, row.id, Role.MEMBER, token_id=0)
    with pytest.raises(Forbidden):
        await update_account(actor=member, name="Hijacked", clock=clock)
    assert not await Inbox.exists()
