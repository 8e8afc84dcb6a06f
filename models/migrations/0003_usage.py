import itertools
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

# Written by hand, after the generated operations: count the messages stored before the
# rollups existed (a fresh database has none). Self-contained on purpose, so that later
# changes to services/rollups.py never change what this migration does.
_PAGE = 10_000
_FIGURES = "segments_sent, segments_received, messages_sent, messages_received"
Sums = dict[tuple[Any, ...], list[int]]


def _add(totals: Sums, key: tuple[Any, ...], sums: list[int]) -> None:
    total = totals.setdefault(key, [0, 0, 0, 0])
    for i, value in enumerate(sums):
        total[i] += value


async def backfill_usage(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    numbered = client.capabilities.dialect == "postgres"

    def sql(text: str) -> str:
        if not numbered:
            return text
        counter = itertools.count(1)
        return re.sub(r"\?", lambda _: f"${next(counter)}", text)

    _, accounts = await client.execute_query("SELECT id, timezone FROM account")
    zones = {row[0]: ZoneInfo(row[1]) for row in accounts}
    days: Sums = {}
    last = 0
    while True:
        _, rows = await client.execute_query(
            sql(
                "SELECT id, account_id, inbox_id, direction, created_at, segments FROM message "
                "WHERE id > ? AND refunded_at IS NULL ORDER BY id LIMIT ?"
            ),
            [last, _PAGE],
        )
        for message_id, account_id, inbox_id, direction, created_at, segments in rows:
            if isinstance(created_at, str):
                created_at = datetime.fromisoformat(created_at)
            day = created_at.astimezone(zones[account_id]).date()
            sums = [segments, 0, 1, 0] if direction == "OUTBOUND" else [0, segments, 0, 1]
            _add(days, (account_id, inbox_id, day), sums)
            last = message_id
        if len(rows) < _PAGE:
            break
    months: Sums = {}
    account_days: Sums = {}
    for (account_id, inbox_id, day), sums in days.items():
        _add(months, (account_id, inbox_id, day.replace(day=1)), sums)
        _add(account_days, (account_id, day), sums)
    levels = (
        ("usage_day", "account_id, inbox_id, day", days),
        ("usage_month", "account_id, inbox_id, month", months),
        ("usage_account_day", "account_id, day", account_days),
    )
    for table, columns, totals in levels:
        if totals:
            marks = ", ".join("?" * (columns.count(",") + 5))
            await client.execute_many(
                sql(f"INSERT INTO {table} ({columns}, {_FIGURES}) VALUES ({marks})"),
                [[*key, *sums] for key, sums in totals.items()],
            )


class Migration(migrations.Migration):
    dependencies = [("models", "0002_credits_and_messages")]

    initial = False

    operations = [
        ops.CreateModel(
            name="UsageAccountDay",
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
                        related_name="usage_account_days",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("day", fields.DateField()),
                ("segments_sent", fields.IntField(default=0)),
                ("segments_received", fields.IntField(default=0)),
                ("messages_sent", fields.IntField(default=0)),
                ("messages_received", fields.IntField(default=0)),
            ],
            options={
                "table": "usage_account_day",
                "app": "models",
                "unique_together": (("account", "day"),),
                "pk_attr": "id",
                "table_description": "The account's day: ``usage_day`` summed over its inboxes, for reports without groups.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="UsageDay",
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
                        related_name="usage_days",
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
                        related_name="usage_days",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("day", fields.DateField()),
                ("segments_sent", fields.IntField(default=0)),
                ("segments_received", fields.IntField(default=0)),
                ("messages_sent", fields.IntField(default=0)),
                ("messages_received", fields.IntField(default=0)),
            ],
            options={
                "table": "usage_day",
                "app": "models",
                "unique_together": (("inbox", "day"),),
                "indexes": [
                    Index(
                        fields=[
                            "account_id",
                            "inbox_id",
                            "day",
                            "segments_sent",
                            "segments_received",
                            "messages_sent",
                            "messages_received",
                        ]
                    )
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="UsageMonth",
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
                        related_name="usage_months",
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
                        related_name="usage_months",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("month", fields.DateField()),
                ("segments_sent", fields.IntField(default=0)),
                ("segments_received", fields.IntField(default=0)),
                ("messages_sent", fields.IntField(default=0)),
                ("messages_received", fields.IntField(default=0)),
            ],
            options={
                "table": "usage_month",
                "app": "models",
                "unique_together": (("inbox", "month"),),
                "indexes": [
                    Index(
                        fields=[
                            "account_id",
                            "month",
                            "inbox_id",
                            "segments_sent",
                            "segments_received",
                            "messages_sent",
                            "messages_received",
                        ]
                    )
                ],
                "pk_attr": "id",
                "table_description": "The same sums per calendar month: MONTH and ALL reports read a thirtieth of the rows.",
            },
            bases=["Model"],
        ),
        ops.RunPython(backfill_usage),
    ]
