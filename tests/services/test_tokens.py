from __future__ import annotations

import pytest

from models import Account
from models.enums import Role
from services.access import Principal
from services.accounts import NewAccount, create_account
from services.clock import FrozenClock
from services.errors import Forbidden, NotFound
from services.members import create_member
from services.tokens import authenticate, create_token, revoke_token

pytestmark = pytest.mark.usefixtures("db")


async def ben(admin: Principal, clock: FrozenClock) -> Principal:
    row = await create_member(
        actor=admin,
        name="Ben",
        email="ben@acme.example",
        role=Role.MEMBER,
        personal_phone_number=None,
        region="US",
        clock=clock,
    )
    return Principal(admin.account_id, row.id, Role.MEMBER, token_id=0)


async def test_a_token_authenticates_as_its_member(account: NewAccount) -> None:
    bearer = await authenticate(account.token.secret)
    assert bearer is not None
    assert bearer.principal == Principal(
        account.account.id, account.admin.id, Role.ADMIN, account.token.token.id
    )


async def test_a_token_comes_with_its_account_as_the_orm_reads_it(account: NewAccount) -> None:
    bearer = await authenticate(account.token.secret)
    assert bearer is not None
    stored = await Account.get(id=account.account.id)
    fields = Account._meta.fields_db_projection
    assert {name: getattr(bearer.account, name) for name in fields} == {
        name: getattr(stored, name) for name in fields
    }
    assert bearer.account._saved_in_db


@pytest.mark.parametrize("secret", ["", "tly_", "tly_unknown", "Bearer x", "x" * 1000])
async def test_an_unknown_secret_authenticates_nobody(account: NewAccount, secret: str) -> None:
    assert await authenticate(secret) is None


async def test_a_revoked_token_stops_working_at_once(
    account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    await revoke_token(actor=admin, token_id=account.token.token.id, clock=clock)
    assert await authenticate(account.token.secret) is None


async def test_revoking_twice_is_harmless(
    account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    await revoke_token(actor=admin, token_id=account.token.token.id, clock=clock)
    await revoke_token(actor=admin, token_id=account.token.token.id, clock=clock)


async def test_an_admin_creates_a_token_for_a_member(admin: Principal, clock: FrozenClock) -> None:
    member = await ben(admin, clock)
    issued = await create_token(actor=admin, member_id=member.member_id, name="CI", clock=clock)
    bearer = await authenticate(issued.secret)
    assert bearer is not None
    assert bearer.principal.role is Role.MEMBER
    assert bearer.principal.member_id == member.member_id


async def test_a_member_creates_its_own_token_but_not_others(
    admin: Principal, clock: FrozenClock
) -> None:
    member = await ben(admin, clock)
    own = await create_token(actor=member, member_id=member.member_id, name="laptop", clock=clock)
    assert (await authenticate(own.secret)) is not None
    with pytest.raises(Forbidden):
        await create_token(actor=member, member_id=admin.member_id, name="steal", clock=clock)


async def test_a_member_cannot_revoke_the_admins_token(
    account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    member = await ben(admin, clock)
    with pytest.raises(Forbidden):
        await revoke_token(actor=member, token_id=account.token.token.id, clock=clock)
    assert await authenticate(account.token.secret) is not None


async def test_tokens_and_members_of_another_account_are_not_found(
    account: NewAccount, clock: FrozenClock
) -> None:
    other = await create_account(name="B", admin_name="B", admin_email="b@b.example", clock=clock)
    intruder = Principal(other.account.id, other.admin.id, Role.ADMIN, other.token.token.id)
    with pytest.raises(NotFound):
        await revoke_token(actor=intruder, token_id=account.token.token.id, clock=clock)
    with pytest.raises(NotFound):
        await create_token(actor=intruder, member_id=account.admin.id, name="x", clock=clock)
    assert await authenticate(account.token.secret) is not None
