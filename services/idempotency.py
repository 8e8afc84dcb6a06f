"""Idempotency keys: the same key and input return the first result and do nothing more.

Keys are per account and operation and are kept (at least 24 hours; we keep them).
The same key with a different input is IDEMPOTENCY_CONFLICT. Requests with one
key that arrive together run once: the first to insert the record runs, the others
wait for its outcome and return it.

Two shapes:
- an operation that is one transaction (sending a message) checks and writes the
  record inside that transaction, under the account lock (`find_in_change`,
  `record_in_change`);
- an operation with an outside call in the middle (charging a card) first claims
  the key with a PENDING record (`claim`), then settles it (`settle_in_change`,
  `settle_failed`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from models import IdempotencyRecord
from models.enums import IdempotencyState
from services import sql
from services.errors import IdempotencyConflict, InvalidValue, TallyError, error_for_code
from services.validation import storable_text

MAX_KEY_LENGTH = 255
# A PENDING claim this old belongs to a request that died; another request may take it over.
ABANDONED_AFTER = timedelta(minutes=2)
WAIT_STEP_SECONDS = 0.02
WAIT_LIMIT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Claim:
    record_id: int


def fingerprint(request: dict[str, Any]) -> str:
    """A stable digest of a request's input."""
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def clean_key(key: str, *, field: str = "idempotency_key") -> str:
    storable_text(key, field=field)
    if not key.strip():
        raise InvalidValue("An idempotency key cannot be empty.", field=field)
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidValue(
            f"An idempotency key has at most {MAX_KEY_LENGTH} characters.", field=field
        )
    return key


def _outcome(record: IdempotencyRecord, digest: str) -> dict[str, Any] | None:
    """The stored result of a finished record, raising its stored error; None while PENDING."""
    if record.fingerprint != digest:
        raise IdempotencyConflict(
            "This idempotency key was already used with a different input.",
            field="idempotency_key",
        )
    if record.state is IdempotencyState.DONE:
        result: dict[str, Any] = record.result
        return result
    if record.state is IdempotencyState.FAILED:
        raise error_for_code(record.result["code"], record.result["message"])
    return None


async def find_in_change(
    conn: BaseDBAsyncClient, *, account_id: int, operation: str, key: str, digest: str
) -> dict[str, Any] | None:
    """Inside the operation's ledger change: the first result for the key, or None to run."""
    rows = await sql.fetch_dicts(conn, _FIND, [account_id, operation, key])
    return None if not rows else _outcome(IdempotencyRecord._init_from_db(**rows[0]), digest)


async def record_in_change(
    conn: BaseDBAsyncClient,
    *,
    account_id: int,
    operation: str,
    key: str,
    digest: str,
    result: dict[str, Any],
    now: datetime,
) -> None:
    """Inside the operation's ledger change: store its result under the key."""
    values = [account_id, operation, key, digest, IdempotencyState.DONE, json.dumps(result), now]
    await sql.run(conn, _RECORD, [*values, now])


_FIND = (
    "SELECT id, account_id, operation, key, fingerprint, state, result, created_at, updated_at"
    " FROM idempotency_record WHERE account_id = ? AND operation = ? AND key = ?"
)
_SETTLE = "UPDATE idempotency_record SET state = ?, result = ?, updated_at = ? WHERE id = ?"
_RECORD = (
    "INSERT INTO idempotency_record (account_id, operation, key, fingerprint, state, result,"
    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


async def claim(
    *, account_id: int, operation: str, key: str, digest: str, now: datetime
) -> Claim | dict[str, Any]:
    """Claim the key, or return (or raise) the outcome of the request that holds it."""
    waited = 0.0
    while True:
        try:
            record = await IdempotencyRecord.create(
                account_id=account_id,
                operation=operation,
                key=key,
                fingerprint=digest,
                state=IdempotencyState.PENDING,
                result=None,
                created_at=now,
                updated_at=now,
            )
            return Claim(record.id)
        except IntegrityError:
            record = await IdempotencyRecord.get(
                account_id=account_id, operation=operation, key=key
            )
        outcome = _outcome(record, digest)
        if outcome is not None:
            return outcome
        if now - record.updated_at > ABANDONED_AFTER and await _take_over(record, now):
            return Claim(record.id)
        if waited >= WAIT_LIMIT_SECONDS:
            raise IdempotencyConflict(
                "A request with this idempotency key is still in progress.",
                field="idempotency_key",
            )
        await asyncio.sleep(WAIT_STEP_SECONDS)
        waited += WAIT_STEP_SECONDS


async def _take_over(record: IdempotencyRecord, now: datetime) -> bool:
    taken = await IdempotencyRecord.filter(
        id=record.id, state=IdempotencyState.PENDING, updated_at=record.updated_at
    ).update(updated_at=now)
    return taken == 1


async def settle_in_change(
    conn: BaseDBAsyncClient, claimed: Claim, *, result: dict[str, Any], now: datetime
) -> None:
    """Store the claimed request's result, inside the ledger change that completes it."""
    values = [IdempotencyState.DONE, json.dumps(result), now, claimed.record_id]
    await sql.run(conn, _SETTLE, values)


async def settle_failed(claimed: Claim, *, error: TallyError, now: datetime) -> None:
    """Store the claimed request's expected failure, which repeats of the key then return."""
    await IdempotencyRecord.filter(id=claimed.record_id).update(
        state=IdempotencyState.FAILED,
        result={"code": error.code, "message": error.message},
        updated_at=now,
    )


async def release(claimed: Claim) -> None:
    """Forget a claim whose request failed before doing anything (an unexpected error)."""
    await IdempotencyRecord.filter(id=claimed.record_id, state=IdempotencyState.PENDING).delete()
