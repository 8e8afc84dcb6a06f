"""Balance alerts: thresholds on the total balance, with hysteresis.

An ARMED alert fires (BALANCE_BELOW_THRESHOLD) when a committed change takes the
total below its threshold; a FIRED one re-arms (BALANCE_RECOVERED) once a change
takes the total to its recovery level, threshold + max(1, ceil(threshold / 10)), so
a balance hovering around a threshold raises nothing more.

Every change evaluates the alerts, so an ARMED alert's threshold is never above the
total between changes: state alone tells what a change crosses. The account row
carries the two levels that matter (the highest ARMED threshold, the lowest recovery
level), so a change that crosses nothing reads no alert row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from models import Account, BalanceAlert
from models.enums import AlertState, AuditAction, NoticeKind
from services import audit
from services.access import Principal, require_admin
from services.clock import Clock
from services.errors import InvalidValue
from services.notices import NoticeDraft
from services.sql import connection, fetch, run

MAX_ALERTS = 5
LARGEST_THRESHOLD = 1_000_000

_STATES = "SELECT threshold_credits, state FROM balance_alert WHERE account_id = ?"
_SET_STATE = (
    "UPDATE balance_alert SET state = ?, last_fired_at = COALESCE(?, last_fired_at)"
    " WHERE account_id = ? AND threshold_credits = ?"
)


def recovery_level(threshold: int) -> int:
    """The total at which a FIRED alert re-arms."""
    return threshold + max(1, -(-threshold // 10))


def crossings(states: Iterable[tuple[int, AlertState]], total: int) -> tuple[list[int], list[int]]:
    """The thresholds a change to `total` fires (highest first) and re-arms (lowest first)."""
    fired = sorted((t for t, s in states if s is AlertState.ARMED and total < t), reverse=True)
    recovered = sorted(t for t, s in states if s is AlertState.FIRED and total >= recovery_level(t))
    return fired, recovered


def levels(states: Iterable[tuple[int, AlertState]]) -> tuple[int | None, int | None]:
    """The account's summary: (fire below this total, re-arm at or above this total)."""
    states = list(states)
    armed = [t for t, s in states if s is AlertState.ARMED]
    fired = [recovery_level(t) for t, s in states if s is AlertState.FIRED]
    return (max(armed) if armed else None, min(fired) if fired else None)


def may_cross(account: Account, total: int) -> bool:
    """Whether a change leaving `total` could fire or re-arm anything (no query)."""
    fire_below, recover_at = account.alert_fire_below, account.alert_recover_at
    return (fire_below is not None and total < fire_below) or (
        recover_at is not None and total >= recover_at
    )


async def notices_for_change(
    conn: BaseDBAsyncClient, *, account: Account, now: datetime
) -> list[NoticeDraft]:
    """Fire and re-arm the alerts the locked `account`'s new total crosses.

    Updates the account's summary in memory: the change's own balance write saves it.
    """
    total = account.subscription_credits + account.purchased_credits
    if not may_cross(account, total):
        return []
    states = {int(t): AlertState(s) for t, s in await fetch(conn, _STATES, [account.id])}
    fired, recovered = crossings(states.items(), total)
    for threshold in fired:
        await run(conn, _SET_STATE, [AlertState.FIRED.value, now, account.id, threshold])
        states[threshold] = AlertState.FIRED
    for threshold in recovered:
        await run(conn, _SET_STATE, [AlertState.ARMED.value, None, account.id, threshold])
        states[threshold] = AlertState.ARMED
    account.alert_fire_below, account.alert_recover_at = levels(states.items())
    below = NoticeKind.BALANCE_BELOW_THRESHOLD
    return [NoticeDraft(below, total, threshold_credits=t) for t in fired] + [
        NoticeDraft(NoticeKind.BALANCE_RECOVERED, total, threshold_credits=t) for t in recovered
    ]


def _checked(thresholds: Sequence[int]) -> list[int]:
    if len(thresholds) > MAX_ALERTS:
        raise InvalidValue(f"At most {MAX_ALERTS} thresholds.", field="thresholds")
    if len(set(thresholds)) != len(thresholds):
        raise InvalidValue("Thresholds must be distinct.", field="thresholds")
    if any(not 0 <= t <= LARGEST_THRESHOLD for t in thresholds):
        raise InvalidValue(
            f"Each threshold is 0 to {LARGEST_THRESHOLD:,} credits.", field="thresholds"
        )
    return sorted(thresholds)


async def set_balance_alerts(
    *, actor: Principal, thresholds: Sequence[int], clock: Clock
) -> list[BalanceAlert]:
    """Replace the account's thresholds (credits); kept ones keep their state. Lowest first."""
    require_admin(actor, "set balance alerts")
    wanted = _checked(thresholds)
    now = clock.now()
    # Imported here: the ledger runs this module's rule in every change.
    from services import ledger

    # No change of the balance may commit between reading the total and storing the
    # new alerts' states.
    async with ledger.exclusive(actor.account_id) as account:
        total = account.subscription_credits + account.purchased_credits
        existing = {
            a.threshold_credits: a for a in await BalanceAlert.filter(account_id=account.id)
        }
        before = sorted(existing)
        gone = [t for t in existing if t not in wanted]
        if gone:
            await BalanceAlert.filter(account_id=account.id, threshold_credits__in=gone).delete()
        for threshold in wanted:
            if threshold not in existing:
                state = AlertState.ARMED if total >= threshold else AlertState.FIRED
                existing[threshold] = await BalanceAlert.create(
                    account_id=account.id, threshold_credits=threshold, state=state, created_at=now
                )
        alerts = [existing[t] for t in wanted]
        fire_below, recover_at = levels((a.threshold_credits, a.state) for a in alerts)
        await run(
            connection(),
            "UPDATE account SET alert_fire_below = ?, alert_recover_at = ? WHERE id = ?",
            [fire_below, recover_at, account.id],
        )
        await audit.record(
            account_id=account.id,
            actor=actor,
            action=AuditAction.BALANCE_ALERTS_SET,
            now=now,
            before={"thresholds": before},
            after={"thresholds": sorted(wanted)},
        )
    return alerts


async def list_alerts(*, account_id: int) -> list[BalanceAlert]:
    return await BalanceAlert.filter(account_id=account_id).order_by("threshold_credits")
