"""Tortoise models: the tables of Tally. Only services/ queries them."""

from models.accounts import Account, ApiToken, Inbox, InboxAccess, Member
from models.audit import AuditEntry
from models.credits import (
    AutoRecharge,
    IdempotencyRecord,
    LedgerEntry,
    Message,
    SubscriptionPeriod,
)
from models.exports import UsageExport
from models.usage import UsageAccountDay, UsageDay, UsageMonth

__all__ = [
    "Account",
    "ApiToken",
    "AuditEntry",
    "AutoRecharge",
    "IdempotencyRecord",
    "Inbox",
    "InboxAccess",
    "LedgerEntry",
    "Member",
    "Message",
    "SubscriptionPeriod",
    "UsageAccountDay",
    "UsageDay",
    "UsageExport",
    "UsageMonth",
]
