"""Enumerations stored in the database; their values are the contract's enum values."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"


class InboxKind(StrEnum):
    PERSONAL = "PERSONAL"
    SHARED = "SHARED"


class WeekStart(StrEnum):
    MONDAY = "MONDAY"
    SUNDAY = "SUNDAY"


class Encoding(StrEnum):
    GSM7 = "GSM7"
    UCS2 = "UCS2"


class Direction(StrEnum):
    OUTBOUND = "OUTBOUND"
    INBOUND = "INBOUND"


class MessageStatus(StrEnum):
    QUEUED = "QUEUED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    RECEIVED = "RECEIVED"


class CreditBucket(StrEnum):
    SUBSCRIPTION = "SUBSCRIPTION"
    PURCHASED = "PURCHASED"


class LedgerEntryKind(StrEnum):
    ALLOTMENT_GRANT = "ALLOTMENT_GRANT"
    ALLOTMENT_EXPIRY = "ALLOTMENT_EXPIRY"
    PURCHASE = "PURCHASE"
    AUTO_RECHARGE = "AUTO_RECHARGE"
    OUTBOUND_MESSAGE = "OUTBOUND_MESSAGE"
    INBOUND_MESSAGE = "INBOUND_MESSAGE"
    REFUND = "REFUND"


class IdempotencyState(StrEnum):
    PENDING = "PENDING"
    DONE = "DONE"
    FAILED = "FAILED"


class AlertState(StrEnum):
    ARMED = "ARMED"
    FIRED = "FIRED"


class NoticeKind(StrEnum):
    BALANCE_BELOW_THRESHOLD = "BALANCE_BELOW_THRESHOLD"
    BALANCE_RECOVERED = "BALANCE_RECOVERED"
    BUDGET_WARNING = "BUDGET_WARNING"
    BUDGET_REACHED = "BUDGET_REACHED"
    AUTO_RECHARGE_FAILED = "AUTO_RECHARGE_FAILED"
    AUTO_RECHARGE_DISABLED = "AUTO_RECHARGE_DISABLED"


class BudgetMode(StrEnum):
    SOFT = "SOFT"
    HARD = "HARD"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
