"""The usage rollups: what the messages added up to, per inbox and local day or month, and
per account and local day.

``day`` is a calendar day, and ``month`` the first day of a calendar month, in the
account's current time zone. Rows change only in services/rollups.py, in the transaction
that stores or refunds a message (or that changes the account's zone and rebuilds them),
under the account's row lock. So both tables always equal a GROUP BY over the account's
messages that were not refunded, and a row exists only while it counts a message.

Three levels, so that a report reads as few rows as its shape allows: an account's
totals by day from ``usage_account_day`` (one row a day, however many inboxes), months from
``usage_month``, and per-inbox days (groups, one member's or inbox's usage) from
``usage_day``. Sent (OUTBOUND) and received (INBOUND) are columns rather than rows: half the
rows, summed without branching on the direction.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.accounts import Account, Inbox

# The figures' columns, in the order reports read them.
FIGURES = ("segments_sent", "segments_received", "messages_sent", "messages_received")


class UsageFigures(Model):
    """The four sums every rollup row carries."""

    # Plain INTEGER: PostgreSQL sums them to bigint (a Python int), never to numeric.
    segments_sent = fields.IntField(default=0)
    segments_received = fields.IntField(default=0)
    messages_sent = fields.IntField(default=0)
    messages_received = fields.IntField(default=0)

    class Meta:
        abstract = True


class UsageDay(UsageFigures):
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="usage_days", on_delete=fields.RESTRICT
    )
    account_id: int
    inbox: fields.ForeignKeyRelation[Inbox] = fields.ForeignKeyField(
        "models.Inbox", related_name="usage_days", on_delete=fields.RESTRICT
    )
    inbox_id: int
    day = fields.DateField()

    class Meta:
        table = "usage_day"
        # The upsert's conflict target.
        unique_together = (("inbox", "day"),)
        # Covering, so reports read the index alone: inbox by inbox, each in day order.
        indexes = (("account_id", "inbox_id", "day", *FIGURES),)


class UsageMonth(UsageFigures):
    """The same sums per calendar month: MONTH and ALL reports read a thirtieth of the rows."""

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="usage_months", on_delete=fields.RESTRICT
    )
    account_id: int
    inbox: fields.ForeignKeyRelation[Inbox] = fields.ForeignKeyField(
        "models.Inbox", related_name="usage_months", on_delete=fields.RESTRICT
    )
    inbox_id: int
    # The first day of the month.
    month = fields.DateField()

    class Meta:
        table = "usage_month"
        unique_together = (("inbox", "month"),)
        # Covering, in month order: months of the whole account stream without a sort.
        indexes = (("account_id", "month", "inbox_id", *FIGURES),)


class UsageAccountDay(UsageFigures):
    """The account's day: ``usage_day`` summed over its inboxes, for reports without groups."""

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="usage_account_days", on_delete=fields.RESTRICT
    )
    account_id: int
    day = fields.DateField()

    class Meta:
        table = "usage_account_day"
        unique_together = (("account", "day"),)
