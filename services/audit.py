"""The audit log: who changed which setting of an account, when, and from where.

One door, so that the rule "every settings mutation writes exactly one entry, a refused
one none" (RULES.md "Audit log") lives here and nowhere else::

    async with audited(actor=actor, action=AuditAction.INBOX_BUDGET_SET, clock=clock) as entry:
        before = ...  # read (under a lock when it matters) inside the block
        ...           # validate and write the change
        entry.target_id = inbox.id
        entry.before = {"monthlyCredits": old, "mode": old_mode}
        entry.after = {"monthlyCredits": new, "mode": new_mode}

``audited`` opens the transaction the change runs in. When the block raises (a domain
error: a refusal) everything rolls back and nothing is logged; when it completes, one
entry is written in the same transaction with the fields whose value differs between
``before`` and ``after``, or none when nothing differs (the same values again, revoking a
revoked token). A creation leaves ``before`` as None (every field's ``before`` is null), a
removal leaves ``after`` as None. Field names are the mutation's input fields as the schema
spells them (``thresholdCredits``), values anything JSON can write; secrets are never
passed in (a payment method is ``{"brand", "last4"}``, a token its ``name`` and
``memberId``). Code that already holds the change's transaction calls ``record`` instead,
with the same arguments; the server's own change inside a ledger change
(AUTO_RECHARGE_DISABLED: no actor, no address) calls ``record_server_change``.

The entry is append-only: nothing here, or anywhere, updates or deletes one. Reading the
log: ``services.history.audit_page``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from models import AuditEntry
from models.enums import AuditAction
from services import sql
from services.access import Principal
from services.clock import Clock

__all__ = ["AuditDraft", "audited", "changed_fields", "record", "record_server_change"]

Fields = Mapping[str, object]


@dataclass
class AuditDraft:
    """What the block of ``audited`` changed: filled in as it goes."""

    target_id: int | None = None
    before: Fields | None = None
    after: Fields | None = None


def _json(value: object) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def changed_fields(before: Fields | None, after: Fields | None) -> list[dict[str, str | None]]:
    """``[{"field", "before", "after"}]`` (values as JSON text) for the fields that differ."""
    old, new = before or {}, after or {}
    changes = []
    for name in dict.fromkeys([*old, *new]):
        was, now = _json(old.get(name)), _json(new.get(name))
        if was != now:
            changes.append({"field": name, "before": was, "after": now})
    return changes


async def record(
    *,
    account_id: int,
    actor: Principal,
    action: AuditAction,
    now: datetime,
    target_id: int | None = None,
    before: Fields | None = None,
    after: Fields | None = None,
) -> AuditEntry | None:
    """Write the entry of a change, in the caller's transaction; None when nothing changed."""
    changes = changed_fields(before, after)
    if not changes:
        return None
    return await AuditEntry.create(
        account_id=account_id,
        action=action,
        actor_id=actor.member_id,
        target_id=target_id,
        changes=changes,
        ip=actor.ip,
        created_at=now,
    )


async def record_server_change(
    conn: BaseDBAsyncClient,
    *,
    account_id: int,
    action: AuditAction,
    now: datetime,
    before: Fields,
    after: Fields,
) -> None:
    """Write the entry of the server's own change (no actor, no address) on the connection
    of a ledger change, whose rules may not use the ORM."""
    changes = changed_fields(before, after)
    if changes:
        await sql.run(conn, _INSERT_SERVER_CHANGE, [account_id, action, json.dumps(changes), now])


@asynccontextmanager
async def audited(
    *, actor: Principal, action: AuditAction, clock: Clock
) -> AsyncIterator[AuditDraft]:
    """A transaction for one settings change and its entry (see the module's docstring)."""
    draft = AuditDraft()
    async with in_transaction():
        yield draft
        await record(
            account_id=actor.account_id,
            actor=actor,
            action=action,
            now=clock.now(),
            target_id=draft.target_id,
            before=draft.before,
            after=draft.after,
        )


_INSERT_SERVER_CHANGE = (
    "INSERT INTO audit_entry (account_id, action, actor_id, target_id, changes, ip, created_at)"
    " VALUES (?, ?, NULL, NULL, ?, NULL, ?)"
)
