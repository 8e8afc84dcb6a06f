"""Usage exports: a usage report requested as a file, downloadable for a short while.

A row records what was asked (the range as resolved at creation, granularity, grouping,
format), who asked, and what the file will hold: ``row_count`` data rows, one per bucket
and group of ``group_ids`` (the members or shared inboxes that existed at creation). The
figures themselves are read from the rollups when the file is downloaded. Rows are never
changed or deleted: they are the account's record of who exported what, and when.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.accounts import Account, ApiToken, Member
from models.enums import WeekStart


class UsageExport(Model):
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="usage_exports", on_delete=fields.RESTRICT
    )
    account_id: int
    # Who asked, and with which token: the download runs with the creator's rights.
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="usage_exports", on_delete=fields.RESTRICT
    )
    member_id: int
    token: fields.ForeignKeyRelation[ApiToken] = fields.ForeignKeyField(
        "models.ApiToken", related_name="usage_exports", on_delete=fields.RESTRICT
    )
    token_id: int
    # Local days in the account's zone, both inclusive (an absent range resolved at creation).
    first_day = fields.DateField()
    last_day = fields.DateField()
    # services.calendar.Granularity, services.usage.UsageGroupBy, services.exports.ExportFormat.
    granularity = fields.CharField(max_length=8)
    group_by = fields.CharField(max_length=16)
    format = fields.CharField(max_length=8)
    # The account's week start at creation: WEEK buckets (so row_count) depend on it.
    week_start = fields.CharEnumField(WeekStart, max_length=8)
    # Ids of the groups (members or shared inboxes) at creation, in report order.
    group_ids: Any = fields.JSONField(default=list)
    row_count = fields.IntField()
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()

    class Meta:
        table = "usage_export"
