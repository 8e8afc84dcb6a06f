from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.enums import (
    CreditBucket,
    Direction,
    Encoding,
    IdempotencyState,
    LedgerEntryKind,
    MessageStatus,
)
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    initial = False

    operations = [
        ops.CreateModel(
            name="IdempotencyRecord",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "account",
                    fields.ForeignKeyField(
                        "models.Account",
                        source_field="account_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="idempotency_records",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("operation", fields.CharField(max_length=32)),
                ("key", fields.CharField(max_length=255)),
                ("fingerprint", fields.CharField(max_length=64)),
                (
                    "state",
                    fields.CharEnumField(
                        description="PENDING: PENDING\nDONE: DONE\nFAILED: FAILED",
                        enum_type=IdempotencyState,
                        max_length=7,
                    ),
                ),
                (
                    "result",
                    fields.JSONField(
                        null=True,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("updated_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "idempotency_record",
                "app": "models",
                "unique_together": (("account", "operation", "key"),),
                "pk_attr": "id",
                "table_description": "The outcome of a request made with an idempotency key, per account and operation.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Message",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "account",
                    fields.ForeignKeyField(
                        "models.Account",
                        source_field="account_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="messages",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "inbox",
                    fields.ForeignKeyField(
                        "models.Inbox",
                        source_field="inbox_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="messages",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "direction",
                    fields.CharEnumField(
                        description="OUTBOUND: OUTBOUND\nINBOUND: INBOUND",
                        enum_type=Direction,
                        max_length=8,
                    ),
                ),
                ("from_number", fields.CharField(max_length=32)),
                ("to_number", fields.CharField(max_length=32)),
                ("body", fields.TextField(unique=False)),
                (
                    "encoding",
                    fields.CharEnumField(
                        description="GSM7: GSM7\nUCS2: UCS2", enum_type=Encoding, max_length=4
                    ),
                ),
                ("segments", fields.IntField()),
                ("credits", fields.IntField()),
                (
                    "status",
                    fields.CharEnumField(
                        description="QUEUED: QUEUED\nSENT: SENT\nDELIVERED: DELIVERED\nFAILED: FAILED\nRECEIVED: RECEIVED",
                        enum_type=MessageStatus,
                        max_length=9,
                    ),
                ),
                (
                    "sender",
                    fields.ForeignKeyField(
                        "models.Member",
                        source_field="sender_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="sent_messages",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("provider_message_id", fields.CharField(null=True, unique=True, max_length=128)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                (
                    "refunded_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "message",
                "app": "models",
                "indexes": [
                    Index(fields=["account_id", "created_at", "id"]),
                    Index(fields=["inbox_id", "created_at", "id"]),
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="LedgerEntry",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "account",
                    fields.ForeignKeyField(
                        "models.Account",
                        source_field="account_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="ledger",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "kind",
                    fields.CharEnumField(
                        description="ALLOTMENT_GRANT: ALLOTMENT_GRANT\nALLOTMENT_EXPIRY: ALLOTMENT_EXPIRY\nPURCHASE: PURCHASE\nAUTO_RECHARGE: AUTO_RECHARGE\nOUTBOUND_MESSAGE: OUTBOUND_MESSAGE\nINBOUND_MESSAGE: INBOUND_MESSAGE\nREFUND: REFUND",
                        enum_type=LedgerEntryKind,
                        max_length=16,
                    ),
                ),
                (
                    "bucket",
                    fields.CharEnumField(
                        description="SUBSCRIPTION: SUBSCRIPTION\nPURCHASED: PURCHASED",
                        enum_type=CreditBucket,
                        max_length=12,
                    ),
                ),
                ("credits", fields.IntField()),
                ("balance_after", fields.IntField()),
                ("amount_cents", fields.IntField(null=True)),
                (
                    "message",
                    fields.ForeignKeyField(
                        "models.Message",
                        source_field="message_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="ledger_entries",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("period_index", fields.IntField()),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "ledger_entry",
                "app": "models",
                "indexes": [
                    Index(fields=["account_id", "id"]),
                    Index(fields=["account_id", "period_index", "kind"]),
                ],
                "pk_attr": "id",
                "table_description": "One signed change of one bucket. Append-only: rows are never updated or deleted.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="SubscriptionPeriod",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "account",
                    fields.ForeignKeyField(
                        "models.Account",
                        source_field="account_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="periods",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("index", fields.IntField()),
                ("starts_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("ends_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("granted", fields.IntField()),
                ("expired", fields.IntField()),
                ("applied_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "subscription_period",
                "app": "models",
                "unique_together": (("account", "index"),),
                "pk_attr": "id",
                "table_description": "One row per account and subscription month: the unique key that makes grants exactly-once.",
            },
            bases=["Model"],
        ),
        ops.AddField(
            model_name="Account",
            name="auto_recharge_claimed_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="Account",
            name="auto_recharge_credits",
            field=fields.IntField(default=500),
        ),
        ops.AddField(
            model_name="Account",
            name="auto_recharge_enabled",
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name="Account",
            name="auto_recharge_failures",
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name="Account",
            name="auto_recharge_last_failure",
            field=fields.CharField(null=True, max_length=500),
        ),
        ops.AddField(
            model_name="Account",
            name="auto_recharge_max_per_period",
            field=fields.IntField(default=3),
        ),
        ops.AddField(
            model_name="Account",
            name="auto_recharge_threshold",
            field=fields.IntField(default=100),
        ),
        ops.AddField(
            model_name="Account",
            name="balance_version",
            field=fields.BigIntField(default=0),
        ),
        ops.AddField(
            model_name="Account",
            name="next_period_at",
            field=fields.DatetimeField(
                null=True, db_index=True, auto_now=False, auto_now_add=False
            ),
        ),
        ops.AddField(
            model_name="Account",
            name="payment_brand",
            field=fields.CharField(null=True, max_length=32),
        ),
        ops.AddField(
            model_name="Account",
            name="payment_last4",
            field=fields.CharField(null=True, max_length=4),
        ),
        ops.AddField(
            model_name="Account",
            name="payment_reference",
            field=fields.CharField(null=True, max_length=255),
        ),
        ops.AddField(
            model_name="Account",
            name="period_index",
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name="Account",
            name="purchased_credits",
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name="Account",
            name="subscription_credits",
            field=fields.IntField(default=0),
        ),
    ]
