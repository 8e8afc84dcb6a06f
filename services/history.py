"""Histories: an account's messages, ledger and audit entries, newest first, a page at a time.

Pages are keyset pages: each continues strictly after the position of the last
row of the page before, so rows that arrive meanwhile never shift a page or
repeat a row. Messages are ordered by (created_at, id) descending; ledger
(and audit) entries by id descending, which is their commit order within an account (the
account row lock serialises every change of one account).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.queryset import QuerySet

from models import AuditEntry, Inbox, LedgerEntry, Message
from models.enums import AuditAction, Direction, LedgerEntryKind
from services.access import Principal
from services.errors import NotFound
from services.inboxes import visible_inboxes

RowT = TypeVar("RowT")
ModelT = TypeVar("ModelT", bound=Model)


@dataclass(frozen=True, slots=True)
class Page(Generic[RowT]):
    """At most `first` rows, and whether more follow."""

    rows: Sequence[RowT]
    has_next: bool


@dataclass(frozen=True, slots=True)
class MessagePosition:
    """Where a message stands in newest-first order."""

    created_at: datetime
    id: int


TimeSpan = tuple[datetime, datetime]
"""A half-open UTC interval [start, end)."""


async def message_page(
    *,
    actor: Principal,
    first: int,
    after: MessagePosition | None = None,
    span: TimeSpan | None = None,
    inbox_id: int | None = None,
    direction: Direction | None = None,
) -> Page[Message]:
    """The actor's messages after `after`, newest first; a MEMBER sees its inboxes' only."""
    query = Message.filter(account_id=actor.account_id)
    inbox_ids = await _inbox_scope(actor, inbox_id)
    if inbox_ids is not None:
        query = query.filter(inbox_id__in=inbox_ids)
    if direction is not None:
        query = query.filter(direction=direction)
    if span is not None:
        query = query.filter(created_at__gte=span[0], created_at__lt=span[1])
    if after is not None:
        query = query.filter(
            Q(created_at__lt=after.created_at) | Q(created_at=after.created_at, id__lt=after.id)
        )
    return await _page(query.order_by("-created_at", "-id"), first)


async def ledger_page(
    *,
    account_id: int,
    first: int,
    after: int | None = None,
    span: TimeSpan | None = None,
    kinds: Sequence[LedgerEntryKind] | None = None,
) -> Page[LedgerEntry]:
    """The account's ledger entries with ids below `after`, newest first."""
    query = LedgerEntry.filter(account_id=account_id)
    if kinds is not None:
        query = query.filter(kind__in=list(kinds))
    if span is not None:
        query = query.filter(created_at__gte=span[0], created_at__lt=span[1])
    if after is not None:
        query = query.filter(id__lt=after)
    return await _page(query.order_by("-id"), first)


async def audit_page(
    *,
    account_id: int,
    first: int,
    after: int | None = None,
    span: TimeSpan | None = None,
    actions: Sequence[AuditAction] | None = None,
) -> Page[AuditEntry]:
    """The account's audit entries with ids below `after`, newest first."""
    query = AuditEntry.filter(account_id=account_id)
    if actions is not None:
        query = query.filter(action__in=list(actions))
    if span is not None:
        query = query.filter(created_at__gte=span[0], created_at__lt=span[1])
    if after is not None:
        query = query.filter(id__lt=after)
    return await _page(query.order_by("-id"), first)


async def _inbox_scope(actor: Principal, inbox_id: int | None) -> list[int] | None:
    """The inboxes a listing is limited to; None for every inbox of the account."""
    if actor.is_admin and inbox_id is None:
        return None
    visible = [inbox.id for inbox in await visible_inboxes(actor)]
    if inbox_id is None:
        return visible
    if inbox_id not in visible:
        raise NotFound.unknown("inbox_id")
    return [inbox_id]


async def _page(query: QuerySet[ModelT], first: int) -> Page[ModelT]:
    # One row more than asked for tells whether another page follows, without a COUNT.
    rows = await query.limit(first + 1)
    return Page(rows=rows[:first], has_next=len(rows) > first)


async def messages_by_ids(ids: Sequence[int]) -> dict[int, Message]:
    """Messages by id (for batch loaders)."""
    return {message.id: message for message in await Message.filter(id__in=ids)}


async def inboxes_by_ids(ids: Sequence[int]) -> dict[int, Inbox]:
    """Inboxes by id (for batch loaders)."""
    return {inbox.id: inbox for inbox in await Inbox.filter(id__in=ids)}
