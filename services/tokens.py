"""API tokens: random secrets shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from models import ApiToken, Member
from models.enums import Role
from services.access import Principal, require_admin
from services.clock import Clock
from services.errors import Forbidden, NotFound
from services.validation import clean_name

PREFIX = "tly_"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: ApiToken
    secret: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def add_token(*, member: Member, name: str, now: datetime) -> IssuedToken:
    secret = PREFIX + secrets.token_urlsafe(32)
    token = await ApiToken.create(
        account_id=member.account_id,
        member=member,
        name=clean_name(name, field="name"),
        secret_hash=_hash(secret),
        created_at=now,
    )
    return IssuedToken(token=token, secret=secret)


async def create_token(*, actor: Principal, member_id: int, name: str, clock: Clock) -> IssuedToken:
    """A new token for a member: an ADMIN's for anyone in the account, a MEMBER's for itself."""
    member = await Member.get_or_none(id=member_id, account_id=actor.account_id)
    if member is None:
        raise NotFound("No such member.", field="member_id")
    if member.id != actor.member_id:
        require_admin(actor, "create tokens for other members")
    return await add_token(member=member, name=name, now=clock.now())


async def revoke_token(*, actor: Principal, token_id: int, clock: Clock) -> None:
    """Revoke a token at once; a MEMBER may revoke only its own. Revoking twice is harmless."""
    token = await ApiToken.get_or_none(id=token_id, account_id=actor.account_id)
    if token is None:
        raise NotFound("No such token.", field="token_id")
    if token.member_id != actor.member_id and not actor.is_admin:
        raise Forbidden("Only an admin may revoke another member's token.", field="token_id")
    await ApiToken.filter(id=token.id, revoked_at__isnull=True).update(revoked_at=clock.now())


async def authenticate(secret: str) -> Principal | None:
    """The principal of a live token, or None for an unknown or revoked one."""
    if not secret.startswith(PREFIX):
        return None
    # One query (a join), since every request pays for it.
    rows = await ApiToken.filter(secret_hash=_hash(secret), revoked_at__isnull=True).values(
        "id", "account_id", "member_id", "member__role"
    )
    if not rows:
        return None
    row = rows[0]
    return Principal(
        account_id=row["account_id"],
        member_id=row["member_id"],
        role=Role(row["member__role"]),
        token_id=row["id"],
    )


async def is_live(token_id: int) -> bool:
    return await ApiToken.exists(id=token_id, revoked_at__isnull=True)
