"""Accounts, members, inboxes and API tokens."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.enums import BudgetMode, InboxKind, Role, WeekStart


class Account(Model):
    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=200)
    timezone = fields.CharField(max_length=64)
    week_start = fields.CharEnumField(WeekStart, max_length=8)
    # The creation instant is also the anchor of every subscription month.
    created_at = fields.DatetimeField()
    plan_name = fields.CharField(max_length=100)
    monthly_credits = fields.IntField()
    price_per_credit_cents = fields.IntField()
    currency = fields.CharField(max_length=3)

    # The balance, per bucket. Changed only by services/ledger.py, in the same
    # transaction as the ledger entries whose sum it always equals.
    subscription_credits = fields.IntField(default=0)
    purchased_credits = fields.IntField(default=0)
    # The subscription month whose allotment was granted last, and when the next starts.
    period_index = fields.IntField(default=0)
    next_period_at = fields.DatetimeField(null=True, db_index=True)
    # Bumped by every committed balance change: orders live events across processes.
    balance_version = fields.BigIntField(default=0)

    payment_brand = fields.CharField(max_length=32, null=True)
    payment_last4 = fields.CharField(max_length=4, null=True)
    # The payment provider's reference to the saved method (never a card number).
    payment_reference = fields.CharField(max_length=255, null=True)

    auto_recharge_enabled = fields.BooleanField(default=False)
    auto_recharge_threshold = fields.IntField(default=100)
    auto_recharge_credits = fields.IntField(default=500)
    auto_recharge_max_per_period = fields.IntField(default=3)
    auto_recharge_failures = fields.IntField(default=0)
    auto_recharge_last_failure = fields.CharField(max_length=500, null=True)
    # Set while one process runs a recharge, so that no two run at once for the account.
    auto_recharge_claimed_at = fields.DatetimeField(null=True)

    # Balance alerts, summed up from `balance_alert` so that a change reads them with the
    # row it locks anyway: a total below `alert_fire_below` fires an ARMED alert, one at
    # or above `alert_recover_at` re-arms a FIRED one (services/alerts.py).
    alert_fire_below = fields.IntField(null=True)
    alert_recover_at = fields.IntField(null=True)

    class Meta:
        table = "account"


class Member(Model):
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="members", on_delete=fields.RESTRICT
    )
    account_id: int
    name = fields.CharField(max_length=200)
    email = fields.CharField(max_length=320)
    # Lower-cased e-mail: uniqueness within an account ignores case.
    email_key = fields.CharField(max_length=320)
    role = fields.CharEnumField(Role, max_length=8)
    created_at = fields.DatetimeField()

    class Meta:
        table = "member"
        unique_together = (("account", "email_key"),)


class Inbox(Model):
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="inboxes", on_delete=fields.RESTRICT
    )
    account_id: int
    name = fields.CharField(max_length=200)
    # E.164; unique across the deployment because inbound messages are routed by it.
    phone_number = fields.CharField(max_length=16, unique=True)
    kind = fields.CharEnumField(InboxKind, max_length=8)
    owner: fields.ForeignKeyNullableRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="personal_inboxes", null=True, on_delete=fields.RESTRICT
    )
    owner_id: int | None
    created_at = fields.DatetimeField()
    # The monthly credit budget (services/budgets.py); both null without one.
    budget_credits = fields.IntField(null=True)
    budget_mode = fields.CharEnumField(BudgetMode, max_length=4, null=True)

    class Meta:
        table = "inbox"


class InboxAccess(Model):
    """A member who may send from a SHARED inbox."""

    id = fields.BigIntField(primary_key=True)
    inbox: fields.ForeignKeyRelation[Inbox] = fields.ForeignKeyField(
        "models.Inbox", related_name="access", on_delete=fields.CASCADE
    )
    inbox_id: int
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="inbox_access", on_delete=fields.CASCADE
    )
    member_id: int

    class Meta:
        table = "inbox_access"
        unique_together = (("inbox", "member"),)


class ApiToken(Model):
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="tokens", on_delete=fields.RESTRICT
    )
    account_id: int
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="tokens", on_delete=fields.RESTRICT
    )
    member_id: int
    name = fields.CharField(max_length=200)
    # SHA-256 of the secret: the secret itself is shown once and never stored.
    secret_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_token"
