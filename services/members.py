"""Members of an account, each optionally with a personal inbox."""

from __future__ import annotations

from datetime import datetime

from tortoise.exceptions import IntegrityError

from models import Account, Inbox, Member
from models.enums import AuditAction, InboxKind, Role
from services.access import Principal, require_admin
from services.audit import audited
from services.clock import Clock
from services.errors import AlreadyExists, NotFound
from services.inboxes import add_inbox
from services.validation import clean_email, clean_name


async def add_member(
    *, account: Account, name: str, email: str, role: Role, now: datetime
) -> Member:
    """Store a member; the e-mail must be new to the account (case-insensitively)."""
    address = clean_email(email, field="email")
    key = address.lower()
    if await Member.exists(account_id=account.id, email_key=key):
        raise AlreadyExists(f"{address} is already a member of this account.", field="email")
    try:
        return await Member.create(
            account=account,
            name=clean_name(name, field="name"),
            email=address,
            email_key=key,
            role=role,
            created_at=now,
        )
    except IntegrityError as exc:  # a concurrent request added the same e-mail first
        raise AlreadyExists(
            f"{address} is already a member of this account.", field="email"
        ) from exc


async def create_member(
    *,
    actor: Principal,
    name: str,
    email: str,
    role: Role,
    personal_phone_number: str | None,
    region: str,
    clock: Clock,
) -> Member:
    """Add a member to the actor's account, with a personal inbox when a number is given.

    Audited as one MEMBER_CREATED entry; the personal inbox's number is one of its fields.
    """
    require_admin(actor, "add members")
    now = clock.now()
    async with audited(actor=actor, action=AuditAction.MEMBER_CREATED, clock=clock) as entry:
        account = await Account.get(id=actor.account_id)
        member = await add_member(account=account, name=name, email=email, role=role, now=now)
        inbox = None
        if personal_phone_number is not None:
            inbox = await add_inbox(
                account=account,
                name=member.name,
                phone_number=personal_phone_number,
                kind=InboxKind.PERSONAL,
                owner=member,
                region=region,
                now=now,
                phone_field="personal_phone_number",
            )
        entry.target_id = member.id
        entry.after = {
            "name": member.name,
            "email": member.email,
            "role": member.role.value,
            "personalPhoneNumber": None if inbox is None else inbox.phone_number,
        }
    return member


async def get_member(*, account_id: int, member_id: int) -> Member:
    member = await Member.get_or_none(id=member_id, account_id=account_id)
    if member is None:
        raise NotFound.unknown("member_id")
    return member


async def list_members(account_id: int) -> list[Member]:
    return await Member.filter(account_id=account_id).order_by("id")


async def members_by_ids(member_ids: list[int]) -> dict[int, Member]:
    return {m.id: m for m in await Member.filter(id__in=member_ids)}


async def personal_inboxes(member_ids: list[int]) -> dict[int, Inbox]:
    """Each member's personal inbox, by member id (members without one are absent)."""
    rows = await Inbox.filter(owner_id__in=member_ids, kind=InboxKind.PERSONAL).order_by("id")
    return {inbox.owner_id: inbox for inbox in reversed(rows) if inbox.owner_id is not None}
