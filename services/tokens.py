"""API tokens: random secrets shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from models import Account, ApiToken, Member
from models.enums import AuditAction, Role
from services import sql
from services.access import Principal, require_admin
from services.audit import audited
from services.clock import Clock
from services.errors import Forbidden, NotFound
from services.validation import clean_name

PREFIX = "tly_"
# The token's own columns in the lookup, named apart from the account's.
_TOKEN_ID, _MEMBER_ID, _ROLE = "tally_token_id", "tally_member_id", "tally_member_role"


@dataclass(frozen=True, slots=True)
class Bearer:
    """A live token's principal, and its account as read in the same statement."""

    principal: Principal
    account: Account


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
    async with audited(actor=actor, action=AuditAction.API_TOKEN_CREATED, clock=clock) as entry:
        issued = await add_token(member=member, name=name, now=clock.now())
        entry.target_id = issued.token.id
        entry.after = _audited_fields(issued.token)
    return issued


async def revoke_token(*, actor: Principal, token_id: int, clock: Clock) -> bool:
    """Revoke a token at once; a MEMBER may revoke only its own. Whether this call revoked it
    (False for a token revoked already: nothing changes, nothing is audited)."""
    token = await ApiToken.get_or_none(id=token_id, account_id=actor.account_id)
    if token is None:
        raise NotFound("No such token.", field="token_id")
    if token.member_id != actor.member_id and not actor.is_admin:
        raise Forbidden("Only an admin may revoke another member's token.", field="token_id")
    async with audited(actor=actor, action=AuditAction.API_TOKEN_REVOKED, clock=clock) as entry:
        revoked = await ApiToken.filter(id=token.id, revoked_at__isnull=True).update(
            revoked_at=clock.now()
        )
        if revoked:
            entry.target_id = token.id
            entry.before = _audited_fields(token)
    return bool(revoked)


def _audited_fields(token: ApiToken) -> dict[str, object]:
    """What the audit log says of a token: never its secret (nor its hash)."""
    return {"name": token.name, "memberId": str(token.member_id)}


async def authenticate(secret: str) -> Bearer | None:
    """The principal and account of a live token, or None for an unknown or revoked one.

    Every request pays for this, so it is one raw statement: building the same join
    with Tortoise's query builder cost more than running it, and reading the account
    apart was one more round trip (docs/benchmarks.md, "Usage reports").
    """
    if not secret.startswith(PREFIX):
        return None
    conn = sql.connection()
    rows = await sql.fetch_dicts(conn, _lookup_sql(), [_hash(secret)])
    if not rows:
        return None
    row = rows[0]
    principal = Principal(
        account_id=row["id"],
        member_id=row.pop(_MEMBER_ID),
        role=Role(row.pop(_ROLE)),
        token_id=row.pop(_TOKEN_ID),
    )
    # What Tortoise itself makes of a selected row: the account's columns, by name.
    return Bearer(principal=principal, account=Account._init_from_db(**row))


@cache
def _lookup_sql() -> str:
    columns = ", ".join(f'a."{column}"' for column in Account._meta.fields_db_projection.values())
    return (
        f"SELECT t.id AS {_TOKEN_ID}, t.member_id AS {_MEMBER_ID}, m.role AS {_ROLE}, {columns} "
        "FROM api_token t JOIN member m ON m.id = t.member_id "
        "JOIN account a ON a.id = t.account_id "
        "WHERE t.secret_hash = ? AND t.revoked_at IS NULL"
    )


async def is_live(token_id: int) -> bool:
    return await ApiToken.exists(id=token_id, revoked_at__isnull=True)
