"""The audit log: Account.auditLog and its AuditEntry type."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from models import AuditEntry as AuditEntryRow
from models.enums import AuditAction
from schema.context import Context
from schema.ids import to_id
from schema.pagination import Connection, CursorCodec
from services.history import Page

if TYPE_CHECKING:
    from schema.members import Member

strawberry.enum(AuditAction)

AUDIT_CURSORS = CursorCodec("audit")


@strawberry.type
class AuditChange:
    field: str
    before: str | None = strawberry.field(
        description="JSON text of the value before; null when there was none."
    )
    after: str | None = strawberry.field(
        description="JSON text of the value after; null when there is none."
    )


@strawberry.type
class AuditEntry:
    id: strawberry.ID
    action: AuditAction
    target_id: strawberry.ID | None = strawberry.field(
        description=(
            "The id of what was changed (member, inbox, token, endpoint), "
            "or null for the account itself."
        )
    )
    changes: list[AuditChange] = strawberry.field(
        description="Only the fields that changed; secrets never appear."
    )
    ip: str | None = strawberry.field(
        description="The client's address as the server saw it; null for the server's own actions."
    )
    created_at: datetime
    actor_key: strawberry.Private[int | None]

    @classmethod
    def from_model(cls, row: AuditEntryRow) -> AuditEntry:
        return cls(
            id=to_id(row.id),
            action=row.action,
            target_id=None if row.target_id is None else to_id(row.target_id),
            changes=[AuditChange(**change) for change in row.changes],
            ip=row.ip,
            created_at=row.created_at,
            actor_key=row.actor_id,
        )

    @strawberry.field(description="Who did it; null for the server's own actions.")
    async def actor(
        self, info: strawberry.Info[Context, Any]
    ) -> Annotated[Member, strawberry.lazy("schema.members")] | None:
        from schema.members import Member

        if self.actor_key is None:
            return None
        row = await info.context.loaders.member.load(self.actor_key)
        return None if row is None else Member.from_model(row)


@strawberry.type
class AuditEntryConnection(Connection[AuditEntry]):
    @classmethod
    def from_result(cls, page: Page[AuditEntryRow], *, secret: str) -> AuditEntryConnection:
        return cls.from_page(
            page,
            node=AuditEntry.from_model,
            cursor=lambda row: AUDIT_CURSORS.encode([row.id], secret=secret),
        )
