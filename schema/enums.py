"""The contract's enums are the domain's own enums, registered with Strawberry here."""

from __future__ import annotations

import strawberry

from models.enums import InboxKind, Role, WeekStart

for _enum in (Role, InboxKind, WeekStart):
    strawberry.enum(_enum)

__all__ = ["InboxKind", "Role", "WeekStart"]
