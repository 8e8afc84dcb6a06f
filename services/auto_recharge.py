"""Auto-recharge: buy credits when a committed change leaves the total below a threshold.

At most one recharge per triggering change (the charge's idempotency key is the
change's balance version, and a recharge is never itself the trigger of another),
at most `max_per_period` per subscription month, never two at once for one account
(a claim on the account row), and three declines in a row turn it off. An outbound
send that would fail for lack of credits triggers it first, whatever the threshold.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from models import Account, LedgerEntry
from models.enums import CreditBucket, LedgerEntryKind
from services.access import Principal, require_admin
from services.allotments import apply_due_allotments
from services.broadcast import Broker, announce
from services.clock import Clock
from services.errors import InvalidValue, PaymentDeclined, PaymentMethodRequired
from services.ledger import Change, Posting, lock_account, post, save_balance
from services.payments import PaymentProvider, saved_method
from services.periods import period_at

FAILURES_BEFORE_OFF = 3
# A claim older than this belongs to a process that died mid-recharge.
CLAIM_TIMEOUT = timedelta(minutes=1)
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
    account = await Account.get(id=actor.account_id)
    if enabled:
        if saved_method(account) is None:
            raise PaymentMethodRequired(
                "Save a payment method before turning auto-recharge on.", field="enabled"
            )
        # Turning it on again is the admin's answer to earlier declines: count afresh.
        changes["auto_recharge_failures"] = 0
    await Account.filter(id=account.id).update(**changes)
    return await auto_recharge_state(await Account.get(id=account.id), clock=clock)


async def maybe_auto_recharge(
    *,
    account_id: int,
    clock: Clock,
    provider: PaymentProvider,
    broker: Broker,
    required: int | None = None,
) -> Change | None:
    """After a committed change: recharge if the rules say so; the change, or None.

    `required` is the cost (credits) of an outbound send refused for lack of credits:
    it triggers a recharge whatever the threshold, unless the total covers it by now.
    Such a send waits for a recharge that another request is running instead of
    giving up, since that recharge may cover it.
    """
    waited = 0.0
    while True:
        account = await Account.get(id=account_id)
        method = saved_method(account)
        if method is None or not await _recharge_applies(account, required, clock=clock):
            return None
        if await _claim(account, clock=clock):
            break
        if required is None or waited >= WAIT_LIMIT_SECONDS:
            return None
        await asyncio.sleep(WAIT_STEP_SECONDS)
        waited += WAIT_STEP_SECONDS
    amount = account.auto_recharge_credits * account.price_per_credit_cents
    try:
        await provider.charge(
            reference=method.reference,
            amount_cents=amount,
            currency=account.currency,
            idempotency_key=f"auto-recharge:{account.id}:{account.balance_version}",
        )
    except PaymentDeclined as declined:
        await _record_decline(account, reason=declined.message)
        return None
    except BaseException:
        await Account.filter(id=account.id).update(auto_recharge_claimed_at=None)
        raise
    return await _add_recharge(account, amount_cents=amount, clock=clock, broker=broker)


def below_threshold(account: Account) -> bool:
    """Whether `account` as read could trigger a threshold recharge (no query: a first filter)."""
    total = account.subscription_credits + account.purchased_credits
    return (
        account.auto_recharge_enabled
        and account.payment_reference is not None
        and total < account.auto_recharge_threshold
    )


async def _recharge_applies(account: Account, required: int | None, *, clock: Clock) -> bool:
    """Whether the rules call for a recharge of `account` as read (see maybe_auto_recharge)."""
    if not account.auto_recharge_enabled:
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


async def _claim(account: Account, *, clock: Clock) -> bool:
    """Take the account's recharge claim, if no recharge runs and no change came since we read."""
    now = clock.now()
    free = Q(auto_recharge_claimed_at__isnull=True) | Q(
        auto_recharge_claimed_at__lt=now - CLAIM_TIMEOUT
    )
    taken = await Account.filter(
        free, id=account.id, auto_recharge_enabled=True, balance_version=account.balance_version
    ).update(auto_recharge_claimed_at=now)
    return taken == 1


async def _record_decline(account: Account, *, reason: str) -> None:
    """Count the decline in the row itself and turn off at the limit; never turn back on."""
    async with in_transaction():
        await Account.filter(id=account.id).update(
            auto_recharge_failures=F("auto_recharge_failures") + 1,
            auto_recharge_last_failure=reason,
            auto_recharge_claimed_at=None,
        )
        await Account.filter(id=account.id, auto_recharge_failures__gte=FAILURES_BEFORE_OFF).update(
            auto_recharge_enabled=False
        )


async def _add_recharge(
    account: Account, *, amount_cents: int, clock: Clock, broker: Broker
) -> Change:
    recharge = Posting(
        LedgerEntryKind.AUTO_RECHARGE,
        CreditBucket.PURCHASED,
        account.auto_recharge_credits,
        amount_cents=amount_cents,
    )
    async with in_transaction():
        locked = await lock_account(account.id)
        entries = await apply_due_allotments(locked, now=clock.now())
        entries += await post(locked, [recharge], now=clock.now())
        balance = await save_balance(locked)
        await Account.filter(id=account.id).update(
            auto_recharge_failures=0, auto_recharge_last_failure=None, auto_recharge_claimed_at=None
        )
    change = Change(balance=balance, entries=entries)
    await announce(broker, change)
    return change
