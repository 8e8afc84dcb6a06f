"""The audit log: one row per change of an account's settings, written by services/audit.py.

Append-only: rows are inserted in the transaction of the change they record and never
updated or deleted. ``changes`` holds only the fields that changed, as
``[{"field", "before", "after"}]`` with each value JSON text (or null), never a secret.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

from models.accounts import Account, Member
from models.enums import AuditAction


class AuditEntry(Model):
    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="audit_entries", on_delete=fields.RESTRICT
    )
    account_id: int
    action = fields.CharEnumField(AuditAction, max_length=32)
    # Null for the server's own actions (AUTO_RECHARGE_DISABLED).
    actor: fields.ForeignKeyNullableRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="audit_entries", null=True, on_delete=fields.RESTRICT
    )
    actor_id: int | None
    # The member, inbox, token or endpoint changed; null for the account itself.
    target_id = fields.BigIntField(null=True)
    changes: Any = fields.JSONField()
    # An IPv6 address in text is at most 45 characters.
    ip = fields.CharField(max_length=45, null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "audit_entry"
        # Newest first by id (the ledger's order), filtered by action and time.
        indexes = (("account_id", "id"),)
