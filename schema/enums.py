"""The contract's enums are the domain's own enums, registered with Strawberry here."""

from __future__ import annotations

import strawberry

from models.enums import (
    AlertState,
    BudgetMode,
    CreditBucket,
    DeliveryStatus,
    Direction,
    Encoding,
    InboxKind,
    LedgerEntryKind,
    MessageStatus,
    NoticeKind,
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
    AlertState,
    NoticeKind,
    BudgetMode,
    DeliveryStatus,
):
    strawberry.enum(_enum)

__all__ = [
    "AlertState",
    "BudgetMode",
    "CreditBucket",
    "DeliveryStatus",
    "Direction",
    "Encoding",
    "InboxKind",
    "LedgerEntryKind",
    "MessageStatus",
    "NoticeKind",
    "Role",
    "WeekStart",
]
