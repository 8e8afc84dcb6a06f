from tortoise import migrations
from tortoise.migrations import operations as ops
from models.enums import InboxKind, Role, WeekStart
from tortoise.fields.base import OnDelete
from tortoise import fields


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="Account",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("name", fields.CharField(max_length=200)),
                ("timezone", fields.CharField(max_length=64)),
                (
                    "week_start",
                    fields.CharEnumField(
                        description="MONDAY: MONDAY\nSUNDAY: SUNDAY",
                        enum_type=WeekStart,
                        max_length=8,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("plan_name", fields.CharField(max_length=100)),
                ("monthly_credits", fields.IntField()),
                ("price_per_credit_cents", fields.IntField()),
                ("currency", fields.CharField(max_length=3)),
            ],
            options={"table": "account", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Member",
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
                        related_name="members",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("name", fields.CharField(max_length=200)),
                ("email", fields.CharField(max_length=320)),
                ("email_key", fields.CharField(max_length=320)),
                (
                    "role",
                    fields.CharEnumField(
                        description="ADMIN: ADMIN\nMEMBER: MEMBER", enum_type=Role, max_length=8
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "member",
                "app": "models",
                "unique_together": (("account", "email_key"),),
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ApiToken",
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
                        related_name="tokens",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                (
                    "member",
                    fields.ForeignKeyField(
                        "models.Member",
                        source_field="member_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="tokens",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("name", fields.CharField(max_length=200)),
                ("secret_hash", fields.CharField(unique=True, max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("revoked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={"table": "api_token", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Inbox",
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
                        related_name="inboxes",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("name", fields.CharField(max_length=200)),
                ("phone_number", fields.CharField(unique=True, max_length=16)),
                (
                    "kind",
                    fields.CharEnumField(
                        description="PERSONAL: PERSONAL\nSHARED: SHARED",
                        enum_type=InboxKind,
                        max_length=8,
                    ),
                ),
                (
                    "owner",
                    fields.ForeignKeyField(
                        "models.Member",
                        source_field="owner_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="personal_inboxes",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={"table": "inbox", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="InboxAccess",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "inbox",
                    fields.ForeignKeyField(
                        "models.Inbox",
                        source_field="inbox_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="access",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "member",
                    fields.ForeignKeyField(
                        "models.Member",
                        source_field="member_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="inbox_access",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
            ],
            options={
                "table": "inbox_access",
                "app": "models",
                "unique_together": (("inbox", "member"),),
                "pk_attr": "id",
                "table_description": "A member who may send from a SHARED inbox.",
            },
            bases=["Model"],
        ),
    ]
