"""Auto-recharge: buy credits when a committed change leaves the total below a threshold.

At most one recharge per triggering change (the claim checks that no change came
since the rules were read, and a recharge is never itself the trigger of another),
at most `max_per_period` per subscription month, never two at once for one account
(a claim on the account row), and three declines in a row turn it off. An outbound
send that would fail for lack of credits triggers it first, whatever the threshold.

A crash between the charge and its ledger entry loses nothing: the claim and a
PENDING `AutoRecharge` with the charge's idempotency key commit before the provider
is called, and settle with the entry (or the decline). What a stopped process left
PENDING is settled, once its claim has timed out, by the account's next trigger or by
the background sweep, which ask the provider for the charge under that key. The entry
is posted under the account lock only while the recharge is not yet CREDITED, so the
charging process and a recovery never credit twice.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models import Account, LedgerEntry
from models.credits import AutoRecharge, RechargeState
from models.enums import AuditAction, CreditBucket, LedgerEntryKind, NoticeKind
from services import audit, ledger, sql
from services.access import Principal, require_admin
from services.audit import audited
from services.balance import LARGEST_AMOUNT, Change, Posting
from services.clock import Clock
from services.errors import InvalidValue, PaymentDeclined, PaymentMethodRequired
from services.ledger import Tx
from services.notices import NoticeDraft
from services.payments import saved_method
from services.periods import period_at
from services.purchases import check_amount_fits
from services.runtime import Runtime

FAILURES_BEFORE_OFF = 3
# A claim older than this belongs to a process that died mid-recharge.
CLAIM_TIMEOUT = timedelta(minutes=1)
UNSETTLED = (RechargeState.PENDING, RechargeState.NOT_CHARGED)
# How a refused send waits for a recharge that another request is running.
WAIT_STEP_SECONDS = 0.02
WAIT_LIMIT_SECONDS = 30.0
LIMITS = {
    "threshold_credits": (0, 1_000_000),
    "recharge_credits": (100, 1_000_000),
    "max_recharges_per_period": (1, 100),
}


@dataclass(frozen=True, slots=True)
class AutoRechargeState:
    enabled: bool
    threshold_credits: int
    recharge_credits: int
    max_recharges_per_period: int
    recharges_this_period: int
    last_failure: str | None


async def recharges_in_current_period(account: Account, *, clock: Clock) -> int:
    index = period_at(account.created_at, clock.now()).index
    return await LedgerEntry.filter(
        account_id=account.id, kind=LedgerEntryKind.AUTO_RECHARGE, period_index=index
    ).count()


async def auto_recharge_state(account: Account, *, clock: Clock) -> AutoRechargeState:
    return AutoRechargeState(
        enabled=account.auto_recharge_enabled,
        threshold_credits=account.auto_recharge_threshold,
        recharge_credits=account.auto_recharge_credits,
        max_recharges_per_period=account.auto_recharge_max_per_period,
        recharges_this_period=await recharges_in_current_period(account, clock=clock),
        last_failure=account.auto_recharge_last_failure,
    )


def _checked(field: str, value: int | None) -> int | None:
    low, high = LIMITS[field]
    if value is not None and not low <= value <= high:
        raise InvalidValue(f"Must be {low:,} to {high:,}.", field=field)
    return value


async def update_auto_recharge(
    *,
    actor: Principal,
    enabled: bool,
    threshold_credits: int | None = None,
    recharge_credits: int | None = None,
    max_recharges_per_period: int | None = None,
    clock: Clock,
) -> AutoRechargeState:
    """Turn auto-recharge on or off and set its rules; unset rules keep their values."""
    require_admin(actor, "change auto-recharge")
    changes: dict[str, object] = {"auto_recharge_enabled": enabled}
    for field, column, value in (
        ("threshold_credits", "auto_recharge_threshold", threshold_credits),
        ("recharge_credits", "auto_recharge_credits", recharge_credits),
        ("max_recharges_per_period", "auto_recharge_max_per_period", max_recharges_per_period),
    ):
        if _checked(field, value) is not None:
            changes[column] = value
    action = AuditAction.AUTO_RECHARGE_UPDATED
    async with audited(actor=actor, action=action, clock=clock) as entry:
        account = await Account.select_for_update().get(id=actor.account_id)
        credits = recharge_credits or account.auto_recharge_credits
        check_amount_fits(account, credits, field="recharge_credits")
        if enabled:
            if saved_method(account) is None:
                raise PaymentMethodRequired(
                    "Save a payment method before turning auto-recharge on.", field="enabled"
                )
            # Turning it on again is the admin's answer to earlier declines: count afresh.
            changes["auto_recharge_failures"] = 0
        await Account.filter(id=account.id).update(**changes)
        entry.before = _settings(account)
        entry.after = _settings(await Account.get(id=account.id))
    return await auto_recharge_state(await Account.get(id=account.id), clock=clock)


def _settings(account: Account) -> dict[str, object]:
    """The rules as updateAutoRecharge's input names them (for the audit log)."""
    return {
        "enabled": account.auto_recharge_enabled,
        "thresholdCredits": account.auto_recharge_threshold,
        "rechargeCredits": account.auto_recharge_credits,
        "maxRechargesPerPeriod": account.auto_recharge_max_per_period,
    }


async def maybe_auto_recharge(
    *, runtime: Runtime, account_id: int, required: int | None = None
) -> Change | None:
    """After a committed change: recharge if the rules say so; the change, or None.

    `required` is the cost (credits) of an outbound send refused for lack of credits:
    it triggers a recharge whatever the threshold, unless the total covers it by now.
    Such a send waits for a recharge that another request is running instead of
    giving up, since that recharge may cover it.
    """
    waited = 0.0
    while True:
        account = await _with_stalled_completed(runtime, account_id)
        method = saved_method(account)
        if method is None or not await _recharge_applies(account, required, clock=runtime.clock):
            return None
        recharge = await _claim(account, clock=runtime.clock)
        if recharge is not None:
            break
        if required is None or waited >= WAIT_LIMIT_SECONDS:
            return None
        await asyncio.sleep(WAIT_STEP_SECONDS)
        waited += WAIT_STEP_SECONDS
    try:
        charge = await runtime.payments.charge(
            reference=method.reference,
            amount_cents=recharge.amount_cents,
            currency=account.currency,
            idempotency_key=recharge.charge_key,
        )
    except PaymentDeclined as declined:
        await _record_decline(runtime, recharge, reason=declined.message)
        return None
    # Any other failure leaves the claim and the PENDING row as they are: the charge may
    # have been made, and recovery asks the provider once the claim has timed out.
    change = await _credit(runtime, recharge, amount_cents=charge.amount_cents)
    await _release(account_id, claimed_at=recharge.created_at)
    return change


async def complete_stalled_recharges(*, runtime: Runtime, account_id: int) -> int:
    """Settle the recharges a stopped process left PENDING on the account; how many it found.

    Only when no live recharge holds the account's claim (none, or one older than
    CLAIM_TIMEOUT), which this takes over: never beside a live recharge, and never two
    at once. A charge the provider has under the recharge's key is credited (one
    entry); without one the recharge is dropped (NOT_CHARGED): the customer paid nothing.
    """
    now = runtime.clock.now()
    unclaimed = Q(auto_recharge_claimed_at__isnull=True) | Q(
        auto_recharge_claimed_at__lt=now - CLAIM_TIMEOUT
    )
    taken = await Account.filter(unclaimed, id=account_id).update(auto_recharge_claimed_at=now)
    if taken != 1:
        return 0
    stalled = await AutoRecharge.filter(account_id=account_id, state=RechargeState.PENDING)
    for recharge in stalled:
        charge = await runtime.payments.find_charge(idempotency_key=recharge.charge_key)
        if charge is None:
            await AutoRecharge.filter(id=recharge.id, state=RechargeState.PENDING).update(
                state=RechargeState.NOT_CHARGED, settled_at=runtime.clock.now()
            )
        else:
            await _credit(runtime, recharge, amount_cents=charge.amount_cents)
    await _release(account_id, claimed_at=now)
    return len(stalled)


async def complete_all_stalled_recharges(*, runtime: Runtime, batch: int = 100) -> int:
    """For the background sweep: settle stalled recharges of any account (a batch); how many."""
    cutoff = runtime.clock.now() - CLAIM_TIMEOUT
    stalled = (
        await AutoRecharge.filter(state=RechargeState.PENDING, created_at__lt=cutoff)
        .order_by("id")
        .limit(batch)
    )
    settled = 0
    for account_id in sorted({recharge.account_id for recharge in stalled}):
        settled += await complete_stalled_recharges(runtime=runtime, account_id=account_id)
    return settled


async def _recharge_applies(account: Account, required: int | None, *, clock: Clock) -> bool:
    """Whether the rules call for a recharge of `account` as read (see maybe_auto_recharge)."""
    if not account.auto_recharge_enabled:
        return False
    if account.auto_recharge_credits * account.price_per_credit_cents > LARGEST_AMOUNT:
        # Set before the price rule: a charge the ledger could not record is never made.
        return False
    total = account.subscription_credits + account.purchased_credits
    if required is not None:
        short = total < required
    else:
        short = total < account.auto_recharge_threshold
        short = short and not await _last_change_was_a_recharge(account)
    return short and (
        await recharges_in_current_period(account, clock=clock)
        < account.auto_recharge_max_per_period
    )


async def _last_change_was_a_recharge(account: Account) -> bool:
    """Whether the newest entry is an auto-recharge: its own change is no trigger for another.

    Read after `account`; the claim then checks that no change came in between.
    """
    last = await LedgerEntry.filter(account_id=account.id).order_by("-id").first()
    return last is not None and last.kind is LedgerEntryKind.AUTO_RECHARGE


async def _with_stalled_completed(runtime: Runtime, account_id: int) -> Account:
    """The account as read, after settling a recharge that died under its claim (if any)."""
    account = await Account.get(id=account_id)
    claimed_at = account.auto_recharge_claimed_at
    if claimed_at is None or claimed_at >= runtime.clock.now() - CLAIM_TIMEOUT:
        return account
    await complete_stalled_recharges(runtime=runtime, account_id=account_id)
    return await Account.get(id=account_id)


async def _claim(account: Account, *, clock: Clock) -> AutoRecharge | None:
    """Claim the account and record a PENDING recharge, if no recharge runs or died
    unsettled and no change came since we read; both commit before any charge."""
    now = clock.now()
    async with in_transaction():
        taken = await Account.filter(
            id=account.id,
            auto_recharge_claimed_at__isnull=True,
            auto_recharge_enabled=True,
            balance_version=account.balance_version,
        ).update(auto_recharge_claimed_at=now)
        if taken != 1:
            return None
        return await AutoRecharge.create(
            account_id=account.id,
            charge_key=f"auto-recharge:{account.id}:{uuid.uuid4().hex}",
            credits=account.auto_recharge_credits,
            amount_cents=account.auto_recharge_credits * account.price_per_credit_cents,
            state=RechargeState.PENDING,
            created_at=now,
        )


async def _release(account_id: int, *, claimed_at: datetime) -> None:
    """Give up the claim taken at `claimed_at`, unless a recovery has taken it over since."""
    await Account.filter(id=account_id, auto_recharge_claimed_at=claimed_at).update(
        auto_recharge_claimed_at=None
    )


async def _record_decline(runtime: Runtime, recharge: AutoRecharge, *, reason: str) -> None:
    """Settle the recharge as declined and count the decline in the account row itself;
    turn auto-recharge off at the limit, never back on.

    A change of the account with no entry: it raises AUTO_RECHARGE_FAILED, and
    AUTO_RECHARGE_DISABLED when this decline turns auto-recharge off, and its balance
    event carries them (spend control).
    """

    async def decline(tx: Tx) -> None:
        values = [RechargeState.DECLINED, reason, tx.now, recharge.id, *UNSETTLED]
        await sql.run(tx.conn, _DECLINED, values)
        account = tx.account
        account.auto_recharge_failures += 1
        account.auto_recharge_last_failure = reason
        turned_off = account.auto_recharge_enabled and (
            account.auto_recharge_failures >= FAILURES_BEFORE_OFF
        )
        account.auto_recharge_enabled = account.auto_recharge_enabled and not turned_off
        await sql.run(tx.conn, _COUNT_DECLINE, [reason, FAILURES_BEFORE_OFF, tx.account_id])
        tx.raised.append(NoticeDraft(NoticeKind.AUTO_RECHARGE_FAILED, tx.total))
        if turned_off:
            tx.raised.append(NoticeDraft(NoticeKind.AUTO_RECHARGE_DISABLED, tx.total))
            # The server's own setting change (RULES.md, Audit log), in the same change.
            await audit.record_server_change(
                tx.conn,
                account_id=tx.account_id,
                action=AuditAction.AUTO_RECHARGE_DISABLED,
                now=tx.now,
                before={"enabled": True},
                after={"enabled": False},
            )

    await ledger.commit(runtime, recharge.account_id, decline)
    await _release(recharge.account_id, claimed_at=recharge.created_at)


async def _credit(runtime: Runtime, recharge: AutoRecharge, *, amount_cents: int) -> Change | None:
    """Post the recharge's entry, unless it is credited already; the change, or None.

    NOT_CHARGED counts as not yet credited: a recovery gave up on a charge that its
    process, slower than the claim's timeout, made after all.
    """
    posting = Posting(
        LedgerEntryKind.AUTO_RECHARGE,
        CreditBucket.PURCHASED,
        recharge.credits,
        amount_cents=amount_cents,
    )

    async def credit(tx: Tx) -> bool:
        # Read under the account lock: whoever credits first is seen by the other.
        states = await sql.fetch(tx.conn, _STATE, [recharge.id])
        if RechargeState(states[0][0]) not in UNSETTLED:
            return False
        entry = await tx.post(posting)
        await _mark_credited(tx, recharge_id=recharge.id, entry_id=entry.id)
        return True

    committed = await ledger.commit(runtime, recharge.account_id, credit)
    return committed.changes[-1] if committed.value else None


async def _mark_credited(tx: Tx, *, recharge_id: int, entry_id: int) -> None:
    """Settle the recharge with its entry, and count declines afresh, in the entry's change."""
    await sql.run(tx.conn, _CREDITED, [RechargeState.CREDITED, entry_id, tx.now, recharge_id])
    tx.account.auto_recharge_failures = 0
    tx.account.auto_recharge_last_failure = None
    await sql.run(tx.conn, _RESET_FAILURES, [tx.account_id])


_STATE = "SELECT state FROM auto_recharge WHERE id = ?"
_DECLINED = (
    "UPDATE auto_recharge SET state = ?, failure = ?, settled_at = ?"
    " WHERE id = ? AND state IN (?, ?)"
)
_COUNT_DECLINE = (
    "UPDATE account SET auto_recharge_failures = auto_recharge_failures + 1,"
    " auto_recharge_last_failure = ?,"
    " auto_recharge_enabled = auto_recharge_enabled AND auto_recharge_failures + 1 < ?"
    " WHERE id = ?"
)

_CREDITED = "UPDATE auto_recharge SET state = ?, entry_id = ?, settled_at = ? WHERE id = ?"
_RESET_FAILURES = (
    "UPDATE account SET auto_recharge_failures = 0, auto_recharge_last_failure = NULL WHERE id = ?"
)
