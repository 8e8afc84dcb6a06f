"""Notices: what balance alerts, budgets and auto-recharge noticed, and their outbox rows.

A change raises drafts; `record` appends them, in the order raised, with one
webhook delivery per endpoint that receives their kind, all in the change's own
transaction: a rolled-back change leaves neither, and a committed one loses
neither (services/outbox.py sends them after commit).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from models import Notice
from models.enums import NoticeKind
from services.access import Principal
from services.clock import to_micros
from services.history import Page
from services.sql import fetch, fetch_written, run

BALANCE_KINDS = frozenset({NoticeKind.BALANCE_BELOW_THRESHOLD, NoticeKind.BALANCE_RECOVERED})
BUDGET_KINDS = frozenset({NoticeKind.BUDGET_WARNING, NoticeKind.BUDGET_REACHED})

_INSERT_NOTICE = (
    "INSERT INTO notice (account_id, kind, threshold_credits, inbox_id, value, event_id,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
_INSERT_DELIVERY = (
    "INSERT INTO webhook_delivery (endpoint_id, notice_id, payload, status, attempts,"
    " next_attempt_us, created_at) VALUES (?, ?, ?, ?, 0, ?, ?)"
)
_ENDPOINTS = "SELECT id, events FROM webhook_endpoint WHERE account_id = ? AND deleted_at IS NULL"


@dataclass(frozen=True, slots=True)
class NoticeDraft:
    """A notice raised inside a change, not yet written."""

    kind: NoticeKind
    value: int
    threshold_credits: int | None = None
    inbox_id: int | None = None


@dataclass(frozen=True, slots=True)
class RaisedNotice:
    """A written notice, as carried by the balance event of its change."""

    id: int
    account_id: int
    kind: NoticeKind
    value: int
    threshold_credits: int | None
    inbox_id: int | None
    event_id: str
    created_at: datetime

    @classmethod
    def from_model(cls, row: Notice) -> RaisedNotice:
        return cls(
            id=row.id,
            account_id=row.account_id,
            kind=row.kind,
            value=row.value,
            threshold_credits=row.threshold_credits,
            inbox_id=row.inbox_id,
            event_id=row.event_id,
            created_at=row.created_at,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "kind": self.kind.value,
            "value": self.value,
            "threshold_credits": self.threshold_credits,
            "inbox_id": self.inbox_id,
            "event_id": self.event_id,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RaisedNotice:
        return cls(
            id=data["id"],
            account_id=data["account_id"],
            kind=NoticeKind(data["kind"]),
            value=data["value"],
            threshold_credits=data["threshold_credits"],
            inbox_id=data["inbox_id"],
            event_id=data["event_id"],
            created_at=datetime.fromisoformat(data["created_at"]),
        )


def visible_to(
    notice: RaisedNotice, actor: Principal, usable_inboxes: frozenset[int] | set[int]
) -> bool:
    """RULES.md: a MEMBER sees balance notices and the budgets of inboxes it may use."""
    if actor.is_admin:
        return True
    if notice.kind in BALANCE_KINDS:
        return True
    return notice.kind in BUDGET_KINDS and notice.inbox_id in usable_inboxes


async def record(
    conn: BaseDBAsyncClient, *, account_id: int, drafts: Sequence[NoticeDraft], now: datetime
) -> list[RaisedNotice]:
    """Append `drafts` in order, each with its deliveries; inside the change's transaction."""
    if not drafts:
        return []
    endpoints = [
        (row[0], set(row[1].split(","))) for row in await fetch(conn, _ENDPOINTS, [account_id])
    ]
    names = await _inbox_names(conn, {d.inbox_id for d in drafts if d.inbox_id is not None})
    raised = []
    for draft in drafts:
        event_id = f"evt_{uuid.uuid4().hex}"
        values = [account_id, draft.kind.value, draft.threshold_credits, draft.inbox_id]
        rows = await fetch_written(conn, _INSERT_NOTICE, [*values, draft.value, event_id, now])
        notice = RaisedNotice(
            id=int(rows[0][0]),
            account_id=account_id,
            kind=draft.kind,
            value=draft.value,
            threshold_credits=draft.threshold_credits,
            inbox_id=draft.inbox_id,
            event_id=event_id,
            created_at=now,
        )
        raised.append(notice)
        body = webhook_body(notice, inbox_name=names.get(draft.inbox_id or 0))
        for endpoint_id, kinds in endpoints:
            if draft.kind.value in kinds:
                due = to_micros(now)
                row: list[object] = [endpoint_id, notice.id, body, "PENDING", due, now]
                await run(conn, _INSERT_DELIVERY, row)
    return raised


async def _inbox_names(conn: BaseDBAsyncClient, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    marks = ", ".join("?" * len(ids))
    rows = await fetch(conn, f"SELECT id, name FROM inbox WHERE id IN ({marks})", sorted(ids))
    return {int(row[0]): str(row[1]) for row in rows}


def webhook_body(notice: RaisedNotice, *, inbox_name: str | None) -> str:
    """The JSON body of every attempt to deliver `notice` (RULES.md, Outgoing webhooks)."""
    inbox = None
    if notice.inbox_id is not None:
        inbox = {"id": str(notice.inbox_id), "name": inbox_name}
    created = notice.created_at.isoformat()
    return json.dumps(
        {
            "id": notice.event_id,
            "type": notice.kind.value.lower(),
            "createdAt": created,
            "accountId": str(notice.account_id),
            "data": {
                "id": str(notice.id),
                "kind": notice.kind.value,
                "thresholdCredits": notice.threshold_credits,
                "inbox": inbox,
                "value": notice.value,
                "createdAt": created,
            },
        },
        separators=(",", ":"),
    )


async def notice_page(
    *, account_id: int, first: int, after: int | None, kinds: Sequence[NoticeKind] | None
) -> Page[Notice]:
    """The account's notices, newest first (of one change, the last raised first)."""
    query = Notice.filter(account_id=account_id)
    if after is not None:
        query = query.filter(id__lt=after)
    if kinds is not None:
        query = query.filter(kind__in=list(kinds))
    rows = await query.order_by("-id").limit(first + 1)
    return Page(rows=rows[:first], has_next=len(rows) > first)
