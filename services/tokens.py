"""API tokens: random secrets shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from models import ApiToken, Member
from models.enums import AuditAction, Role
from services import sql
from services.access import Principal, require_admin
from services.audit import audited
from services.clock import Clock
from services.errors import Forbidden, NotFound
from services.token_cache import TokenCache
from services.validation import clean_name

if TYPE_CHECKING:
    from services.runtime import Runtime

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
        raise NotFound.unknown("member_id")
    if member.id != actor.member_id:
        require_admin(actor, "create tokens for other members")
    async with audited(actor=actor, action=AuditAction.API_TOKEN_CREATED, clock=clock) as entry:
        issued = await add_token(member=member, name=name, now=clock.now())
        entry.target_id = issued.token.id
        entry.after = _audited_fields(issued.token)
    return issued


async def revoke_token(*, runtime: Runtime, actor: Principal, token_id: int) -> bool:
    """Revoke a token at once, in every process; a MEMBER may revoke only its own. Whether
    this call revoked it (False for a token revoked already: nothing changes, nothing is
    audited)."""
    token = await ApiToken.get_or_none(id=token_id, account_id=actor.account_id)
    if token is None:
        raise NotFound.unknown("token_id")
    if token.member_id != actor.member_id and not actor.is_admin:
        raise Forbidden("Only an admin may revoke another member's token.", field="token_id")
    clock = runtime.clock
    async with audited(actor=actor, action=AuditAction.API_TOKEN_REVOKED, clock=clock) as entry:
        revoked = await ApiToken.filter(id=token.id, revoked_at__isnull=True).update(
            revoked_at=clock.now()
        )
        if revoked:
            entry.target_id = token.id
            entry.before = _audited_fields(token)
    # Published again for a token revoked before: a process that missed it hears it now.
    await runtime.broker.publish_revocation(token.id)
    return bool(revoked)


def _audited_fields(token: ApiToken) -> dict[str, object]:
    """What the audit log says of a token: never its secret (nor its hash)."""
    return {"name": token.name, "memberId": str(token.member_id)}


async def authenticate(secret: str, *, cache: TokenCache) -> Principal | None:
    """The principal of a live token, or None for an unknown or revoked one.

    Every request pays for this: a token seen recently costs no query (services/token_cache.py
    says how a revocation still takes effect at once).
    """
    if not secret.startswith(PREFIX):
        return None
    key = _hash(secret)
    principal = cache.get(key)
    if principal is not None:
        return principal
    rows = await sql.fetch(sql.connection(), _LOOKUP, [key])
    if not rows:
        return None
    token_id, member_id, account_id, role = rows[0]
    principal = Principal(
        account_id=account_id, member_id=member_id, role=Role(role), token_id=token_id
    )
    cache.put(key, principal)
    return principal


_LOOKUP = (
    "SELECT t.id, t.member_id, t.account_id, m.role FROM api_token t"
    " JOIN member m ON m.id = t.member_id WHERE t.secret_hash = ? AND t.revoked_at IS NULL"
)


async def is_live(token_id: int) -> bool:
    return await ApiToken.exists(id=token_id, revoked_at__isnull=True)
