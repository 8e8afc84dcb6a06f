from __future__ import annotations

import pytest

from models.enums import Role
from services.access import Principal
from services.accounts import NewAccount, create_account
from services.clock import FrozenClock
from services.errors import Forbidden, NotFound
from services.members import create_member
from services.runtime import Runtime
from services.token_cache import TokenCache
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
    principal = await authenticate(account.token.secret, cache=TokenCache())
    assert principal is not None
    assert principal == Principal(
        account.account.id, account.admin.id, Role.ADMIN, account.token.token.id
    )


async def test_a_revoked_token_is_forgotten_by_every_cache_that_hears_the_broker(
    account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    # given two processes' runtimes on one broker, each with the token cached
    here = Runtime(clock=clock)
    there = Runtime(clock=clock, broker=here.broker)
    for runtime in (here, there):
        assert await authenticate(account.token.secret, cache=runtime.tokens) is not None
    # when one of them revokes it
    await revoke_token(runtime=here, actor=admin, token_id=account.token.token.id)
    # then neither honours it any more
    for runtime in (here, there):
        assert await authenticate(account.token.secret, cache=runtime.tokens) is None


async def test_a_cache_that_missed_a_revocation_forgets_the_token_when_told_it_may_have(
    account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    # given a cache holding the token, and a revocation it did not hear
    cache = TokenCache()
    assert await authenticate(account.token.secret, cache=cache) is not None
    await revoke_token(runtime=Runtime(clock=clock), actor=admin, token_id=admin.token_id)
    assert await authenticate(account.token.secret, cache=cache) is not None
    # when its broker reconnects (it may have missed revocations)
    cache.forget(None)
    # then the token is looked up again, and refused
    assert await authenticate(account.token.secret, cache=cache) is None


@pytest.mark.parametrize("secret", ["", "tly_", "tly_unknown", "Bearer x", "x" * 1000])
async def test_an_unknown_secret_authenticates_nobody(account: NewAccount, secret: str) -> None:
    assert await authenticate(secret, cache=TokenCache()) is None


async def test_a_revoked_token_stops_working_at_once(
    account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    await revoke_token(actor=admin, token_id=account.token.token.id, runtime=Runtime(clock=clock))
    assert await authenticate(account.token.secret, cache=TokenCache()) is None


async def test_revoking_twice_is_harmless(
    account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    await revoke_token(actor=admin, token_id=account.token.token.id, runtime=Runtime(clock=clock))
    await revoke_token(actor=admin, token_id=account.token.token.id, runtime=Runtime(clock=clock))


async def test_an_admin_creates_a_token_for_a_member(admin: Principal, clock: FrozenClock) -> None:
    member = await ben(admin, clock)
    issued = await create_token(actor=admin, member_id=member.member_id, name="CI", clock=clock)
    principal = await authenticate(issued.secret, cache=TokenCache())
    assert principal is not None
    assert principal.role is Role.MEMBER
    assert principal.member_id == member.member_id


async def test_a_member_creates_its_own_token_but_not_others(
    admin: Principal, clock: FrozenClock
) -> None:
    member = await ben(admin, clock)
    own = await create_token(actor=member, member_id=member.member_id, name="laptop", clock=clock)
    assert (await authenticate(own.secret, cache=TokenCache())) is not None
    with pytest.raises(Forbidden):
        await create_token(actor=member, member_id=admin.member_id, name="steal", clock=clock)


async def test_a_member_cannot_revoke_the_admins_token(
    account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    member = await ben(admin, clock)
    with pytest.raises(Forbidden):
        await revoke_token(
            actor=member, token_id=account.token.token.id, runtime=Runtime(clock=clock)
        )
    assert await authenticate(account.token.secret, cache=TokenCache()) is not None


async def test_tokens_and_members_of_another_account_are_not_found(
    account: NewAccount, clock: FrozenClock
) -> None:
    other = await create_account(name="B", admin_name="B", admin_email="b@b.example", clock=clock)
    intruder = Principal(other.account.id, other.admin.id, Role.ADMIN, other.token.token.id)
    with pytest.raises(NotFound):
        await revoke_token(
            actor=intruder, token_id=account.token.token.id, runtime=Runtime(clock=clock)
        )
    with pytest.raises(NotFound):
        await create_token(actor=intruder, member_id=account.admin.id, name="x", clock=clock)
    assert await authenticate(account.token.secret, cache=TokenCache()) is not None
