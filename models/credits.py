"""Messages, the credit ledger, subscription periods, idempotency records and auto-recharges."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.accounts import Account, Inbox, Member
from models.enums import (
    CreditBucket,
    Direction,
    Encoding,
    IdempotencyState,
    LedgerEntryKind,
    MessageStatus,
)


class Message(Model):
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="messages", on_delete=fields.RESTRICT
    )
    account_id: int
    inbox: fields.ForeignKeyRelation[Inbox] = fields.ForeignKeyField(
        "models.Inbox", related_name="messages", on_delete=fields.RESTRICT
    )
    inbox_id: int
    direction = fields.CharEnumField(Direction, max_length=8)
    from_number = fields.CharField(max_length=32)
    to_number = fields.CharField(max_length=32)
    body = fields.TextField()
    encoding = fields.CharEnumField(Encoding, max_length=4)
    segments = fields.IntField()
    credits = fields.IntField()
    status = fields.CharEnumField(MessageStatus, max_length=9)
    sender: fields.ForeignKeyNullableRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="sent_messages", null=True, on_delete=fields.RESTRICT
    )
    sender_id: int | None
    # The carrier's id; unique per account (RULES: two accounts may hold the same id, e.g.
    # imported from different providers), so a repeated inbound webhook is charged once.
    provider_message_id = fields.CharField(max_length=128, null=True)
    created_at = fields.DatetimeField()
    refunded_at = fields.DatetimeField(null=True)

    class Meta:
        table = "message"
        unique_together = (("account", "provider_message_id"),)
        # provider_message_id alone: delivery reports name no account.
        indexes = (
            ("account_id", "created_at", "id"),
            ("inbox_id", "created_at", "id"),
            ("provider_message_id",),
        )


class LedgerEntry(Model):
    """One signed change of one bucket. Append-only: rows are never updated or deleted."""

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="ledger", on_delete=fields.RESTRICT
    )
    account_id: int
    kind = fields.CharEnumField(LedgerEntryKind, max_length=16)
    bucket = fields.CharEnumField(CreditBucket, max_length=12)
    credits = fields.IntField()
    balance_after = fields.IntField()
    amount_cents = fields.IntField(null=True)
    message: fields.ForeignKeyNullableRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name="ledger_entries", null=True, on_delete=fields.RESTRICT
    )
    message_id: int | None
    # The subscription month the entry belongs to (refunds and period figures need it).
    period_index = fields.IntField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "ledger_entry"
        indexes = (("account_id", "id"), ("account_id", "period_index", "kind"))


class SubscriptionPeriod(Model):
    """One row per account and subscription month: the unique key that makes grants exactly-once."""

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="periods", on_delete=fields.RESTRICT
    )
    account_id: int
    index = fields.IntField()
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    granted = fields.IntField()
    expired = fields.IntField()
    applied_at = fields.DatetimeField()

    class Meta:
        table = "subscription_period"
        unique_together = (("account", "index"),)


class IdempotencyRecord(Model):
    """The outcome of a request made with an idempotency key, per account and operation."""

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="idempotency_records", on_delete=fields.RESTRICT
    )
    account_id: int
    operation = fields.CharField(max_length=32)
    key = fields.CharField(max_length=255)
    # SHA-256 of the request's input: the same key with another input is a conflict.
    fingerprint = fields.CharField(max_length=64)
    state = fields.CharEnumField(IdempotencyState, max_length=7)
    result: Any = fields.JSONField(null=True)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "idempotency_record"
        unique_together = (("account", "operation", "key"),)


class RechargeState(StrEnum):
    PENDING = "PENDING"
    CREDITED = "CREDITED"
    DECLINED = "DECLINED"
    # The provider has no charge under the key: the process stopped before charging.
    NOT_CHARGED = "NOT_CHARGED"


class AutoRecharge(Model):
    """One auto-recharge, written before its charge so that a crash after the charge is recovered.

    PENDING while the charge is in flight; a recharge still PENDING after its claim on
    the account timed out is completed by asking the provider for the charge under
    `charge_key`: CREDITED (with its ledger entry) when there is one, NOT_CHARGED when not.
    """

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="auto_recharges", on_delete=fields.RESTRICT
    )
    account_id: int
    # The charge's idempotency key at the payment provider.
    charge_key = fields.CharField(max_length=64, unique=True)
    credits = fields.IntField()
    amount_cents = fields.IntField()
    state = fields.CharEnumField(RechargeState, max_length=11)
    failure = fields.CharField(max_length=500, null=True)
    entry: fields.ForeignKeyNullableRelation[LedgerEntry] = fields.ForeignKeyField(
        "models.LedgerEntry", related_name="auto_recharge", null=True, on_delete=fields.RESTRICT
    )
    entry_id: int | None
    created_at = fields.DatetimeField()
    settled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "auto_recharge"
        indexes = (("state", "created_at"), ("account_id", "state"))
