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
from models.spend import BalanceAlert, InboxPeriodUsage, Notice, WebhookDelivery, WebhookEndpoint
from models.usage import UsageAccountDay, UsageDay, UsageMonth

__all__ = [
    "Account",
    "ApiToken",
    "AuditEntry",
    "AutoRecharge",
    "BalanceAlert",
    "IdempotencyRecord",
    "Inbox",
    "InboxAccess",
    "InboxPeriodUsage",
    "LedgerEntry",
    "Member",
    "Message",
    "Notice",
    "SubscriptionPeriod",
    "UsageAccountDay",
    "UsageDay",
    "UsageExport",
    "UsageMonth",
    "WebhookDelivery",
    "WebhookEndpoint",
]
