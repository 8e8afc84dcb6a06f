"""Inboxes: personal and shared phone numbers, and who may send from them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from models import Account, Inbox, InboxAccess, Member
from models.enums import AuditAction, InboxKind
from services.access import Principal, require_admin
from services.audit import audited
from services.clock import Clock
from services.errors import AlreadyExists, NotFound
from services.phones import to_e164
from services.validation import clean_name


async def add_inbox(
    *,
    account: Account,
    name: str,
    phone_number: str,
    kind: InboxKind,
    owner: Member | None,
    region: str,
    now: datetime,
    name_field: str = "name",
    phone_field: str = "phone_number",
) -> Inbox:
    """Store an inbox; the number must be free across the whole deployment."""
    e164 = to_e164(phone_number, region=region, field=phone_field)
    if await Inbox.exists(phone_number=e164):
        raise AlreadyExists(f"{e164} is already the number of an inbox.", field=phone_field)
    try:
        return await Inbox.create(
            account=account,
            name=clean_name(name, field=name_field),
            phone_number=e164,
            kind=kind,
            owner=owner,
            created_at=now,
        )
    except IntegrityError as exc:  # a concurrent request took the number first
        raise AlreadyExists(
            f"{e164} is already the number of an inbox.", field=phone_field
        ) from exc


async def create_shared_inbox(
    *,
    actor: Principal,
    name: str,
    phone_number: str,
    member_ids: Sequence[int],
    region: str,
    clock: Clock,
) -> Inbox:
    """A SHARED inbox that the listed members (of the actor's account) may send from."""
    require_admin(actor, "create inboxes")
    wanted = set(member_ids)
    found = await Member.filter(account_id=actor.account_id, id__in=wanted).count()
    if found != len(wanted):
        raise NotFound.unknown("member_ids")
    async with audited(actor=actor, action=AuditAction.INBOX_CREATED, clock=clock) as entry:
        account = await Account.get(id=actor.account_id)
        inbox = await add_inbox(
            account=account,
            name=name,
            phone_number=phone_number,
            kind=InboxKind.SHARED,
            owner=None,
            region=region,
            now=clock.now(),
        )
        await InboxAccess.bulk_create(
            [InboxAccess(inbox=inbox, member_id=m) for m in sorted(wanted)]
        )
        entry.target_id = inbox.id
        # Ids as the schema writes them (strings).
        entry.after = {
            "name": inbox.name,
            "phoneNumber": inbox.phone_number,
            "memberIds": [str(m) for m in sorted(wanted)],
        }
    return inbox


async def visible_inboxes(actor: Principal) -> list[Inbox]:
    """Every inbox for an ADMIN; for a MEMBER, the inboxes it may send from."""
    query = Inbox.filter(account_id=actor.account_id)
    if not actor.is_admin:
        shared = await InboxAccess.filter(member_id=actor.member_id).values_list(
            "inbox_id", flat=True
        )
        query = query.filter(Q(id__in=shared) | Q(owner_id=actor.member_id))
    return await query.order_by("id")


async def may_send_from(actor: Principal, inbox: Inbox) -> bool:
    if inbox.account_id != actor.account_id:
        return False
    if actor.is_admin or inbox.owner_id == actor.member_id:
        return True
    return await InboxAccess.exists(inbox_id=inbox.id, member_id=actor.member_id)


async def members_of_inboxes(inbox_ids: Sequence[int]) -> dict[int, list[int]]:
    """Who may send from each inbox: a personal one's owner, a shared one's listed members."""
    result: dict[int, list[int]] = {i: [] for i in inbox_ids}
    for inbox_id, owner_id in await Inbox.filter(
        id__in=inbox_ids, owner_id__not_isnull=True
    ).values_list("id", "owner_id"):
        result[inbox_id].append(owner_id)
    rows = (
        await InboxAccess.filter(inbox_id__in=inbox_ids)
        .order_by("member_id")
        .values_list("inbox_id", "member_id")
    )
    for inbox_id, member_id in rows:
        result[inbox_id].append(member_id)
    return result
