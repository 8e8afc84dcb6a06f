"""Spend control: balance alerts, per-inbox usage counters, notices and outgoing webhooks."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.accounts import Account, Inbox
from models.enums import AlertState, DeliveryStatus, NoticeKind


class BalanceAlert(Model):
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="balance_alerts", on_delete=fields.RESTRICT
    )
    account_id: int
    threshold_credits = fields.IntField()
    state = fields.CharEnumField(AlertState, max_length=5)
    last_fired_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "balance_alert"
        unique_together = (("account", "threshold_credits"),)


class InboxPeriodUsage(Model):
    """Credits of one inbox's messages in one subscription month, net of refunds.

    Kept for every inbox, budget or not, by the transaction that writes each message,
    so a budget set mid-month counts what came before it and no send scans messages.
    `warned`/`reached`: that month's BUDGET_WARNING/BUDGET_REACHED has been raised.
    """

    id = fields.BigIntField(primary_key=True)
    inbox: fields.ForeignKeyRelation[Inbox] = fields.ForeignKeyField(
        "models.Inbox", related_name="period_usage", on_delete=fields.RESTRICT
    )
    inbox_id: int
    period_index = fields.IntField()
    credits = fields.IntField()
    warned = fields.BooleanField(default=False)
    reached = fields.BooleanField(default=False)

    class Meta:
        table = "inbox_period_usage"
        unique_together = (("inbox", "period_index"),)


class Notice(Model):
    """Something an alert or a budget noticed. Append-only."""

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="notices", on_delete=fields.RESTRICT
    )
    account_id: int
    kind = fields.CharEnumField(NoticeKind, max_length=24)
    threshold_credits = fields.IntField(null=True)
    inbox: fields.ForeignKeyNullableRelation[Inbox] = fields.ForeignKeyField(
        "models.Inbox", related_name="notices", null=True, on_delete=fields.RESTRICT
    )
    inbox_id: int | None
    value = fields.IntField()
    # The body's "id" on every attempt to every endpoint.
    event_id = fields.CharField(max_length=40, unique=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "notice"
        indexes = (("account_id", "id"),)


class WebhookEndpoint(Model):
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="webhook_endpoints", on_delete=fields.RESTRICT
    )
    account_id: int
    url = fields.CharField(max_length=2048)
    # Comma-separated notice kinds.
    events = fields.CharField(max_length=200)
    # Kept in clear: every attempt is signed with it (shown to the admin once).
    secret = fields.CharField(max_length=64)
    created_at = fields.DatetimeField()
    # Deleted endpoints stay, so that their deliveries keep their history.
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_endpoint"
        indexes = (("account_id", "deleted_at"),)


class WebhookDelivery(Model):
    """One notice to one endpoint: the outbox row, written in the notice's transaction.

    Instants the dispatcher compares in SQL are microseconds since the epoch, so that
    one statement reads the same on SQLite and PostgreSQL.
    """

    id = fields.BigIntField(primary_key=True)
    endpoint: fields.ForeignKeyRelation[WebhookEndpoint] = fields.ForeignKeyField(
        "models.WebhookEndpoint", related_name="deliveries", on_delete=fields.RESTRICT
    )
    endpoint_id: int
    notice: fields.ForeignKeyRelation[Notice] = fields.ForeignKeyField(
        "models.Notice", related_name="deliveries", on_delete=fields.RESTRICT
    )
    notice_id: int
    # The exact body of every attempt (signed afresh each time).
    payload = fields.TextField()
    status = fields.CharEnumField(DeliveryStatus, max_length=9)
    attempts = fields.IntField(default=0)
    last_status_code = fields.IntField(null=True)
    last_error = fields.CharField(max_length=500, null=True)
    next_attempt_us = fields.BigIntField(null=True)
    # While a dispatcher holds it: until then no other process claims it.
    claimed_until_us = fields.BigIntField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "webhook_delivery"
        indexes = (("status", "next_attempt_us"), ("endpoint_id", "id"))
