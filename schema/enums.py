"""The contract's enums are the domain's own enums, registered with Strawberry here."""

from __future__ import annotations

import strawberry

from models.enums import (
    CreditBucket,
    Direction,
    Encoding,
    InboxKind,
    LedgerEntryKind,
    MessageStatus,
    Role,
    WeekStart,
)

for _enum in (
    Role,
    InboxKind,
    WeekStart,
    Direction,
    MessageStatus,
    Encoding,
    CreditBucket,
    LedgerEntryKind,
):
    strawberry.enum(_enum)

__all__ = [
    "CreditBucket",
    "Direction",
    "Encoding",
    "InboxKind",
    "LedgerEntryKind",
    "MessageStatus",
    "Role",
    "WeekStart",
]
