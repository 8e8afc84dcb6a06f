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

from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from models import Account, LedgerEntry
from models.credits import AutoRecharge, RechargeState
from models.enums import CreditBucket, LedgerEntryKind, NoticeKind
from services.access import Principal, require_admin
from services.allotments import apply_due_allotments
from services.broadcast import Broker, announce
from services.clock import Clock
from services.errors import InvalidValue, PaymentDeclined, PaymentMethodRequired
from services.ledger import Change, Posting, lock_account, post, save_change
from services.notices import NoticeDraft
from services.payments import PaymentProvider, saved_method
from services.periods import period_at

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
        account = await _with_stalled_completed(account_id, clock, provider, broker)
        method = saved_method(account)
        if method is None or not await _recharge_applies(account, required, clock=clock):
            return None
        recharge = await _claim(account, clock=clock)
        if recharge is not None:
            break
        if required is None or waited >= WAIT_LIMIT_SECONDS:
            return None
        await asyncio.sleep(WAIT_STEP_SECONDS)
        waited += WAIT_STEP_SECONDS
    try:
        charge = await provider.charge(
            reference=method.reference,
            amount_cents=recharge.amount_cents,
            currency=account.currency,
            idempotency_key=recharge.charge_key,
        )
    except PaymentDeclined as declined:
        await _record_decline(recharge, reason=declined.message, now=clock.now(), broker=broker)
        return None
    # Any other failure leaves the claim and the PENDING row as they are: the charge may
    # have been made, and recovery asks the provider once the claim has timed out.
    change = await _credit(recharge, amount_cents=charge.amount_cents, clock=clock, broker=broker)
    await _release(account_id, claimed_at=recharge.created_at)
    return change


async def complete_stalled_recharges(
    *, account_id: int, clock: Clock, provider: PaymentProvider, broker: Broker
) -> int:
    """Settle the recharges a stopped process left PENDING on the account; how many it found.

    Only when no live recharge holds the account's claim (none, or one older than
    CLAIM_TIMEOUT), which this takes over: never beside a live recharge, and never two
    at once. A charge the provider has under the recharge's key is credited (one
    entry); without one the recharge is dropped (NOT_CHARGED): the customer paid nothing.
    """
    now = clock.now()
    unclaimed = Q(auto_recharge_claimed_at__isnull=True) | Q(
        auto_recharge_claimed_at__lt=now - CLAIM_TIMEOUT
    )
    taken = await Account.filter(unclaimed, id=account_id).update(auto_recharge_claimed_at=now)
    if taken != 1:
        return 0
    stalled = await AutoRecharge.filter(account_id=account_id, state=RechargeState.PENDING)
    for recharge in stalled:
        charge = await provider.find_charge(idempotency_key=recharge.charge_key)
        if charge is None:
            await AutoRecharge.filter(id=recharge.id, state=RechargeState.PENDING).update(
                state=RechargeState.NOT_CHARGED, settled_at=clock.now()
            )
        else:
            await _credit(recharge, amount_cents=charge.amount_cents, clock=clock, broker=broker)
    await _release(account_id, claimed_at=now)
    return len(stalled)


async def complete_all_stalled_recharges(
    *, clock: Clock, provider: PaymentProvider, broker: Broker, batch: int = 100
) -> int:
    """For the background sweep: settle stalled recharges of any account (a batch); how many."""
    cutoff = clock.now() - CLAIM_TIMEOUT
    stalled = (
        await AutoRecharge.filter(state=RechargeState.PENDING, created_at__lt=cutoff)
        .order_by("id")
        .limit(batch)
    )
    settled = 0
    for account_id in sorted({recharge.account_id for recharge in stalled}):
        settled += await complete_stalled_recharges(
            account_id=account_id, clock=clock, provider=provider, broker=broker
        )
    return settled


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


async def _with_stalled_completed(
    account_id: int, clock: Clock, provider: PaymentProvider, broker: Broker
) -> Account:
    """The account as read, after settling a recharge that died under its claim (if any)."""
    account = await Account.get(id=account_id)
    claimed_at = account.auto_recharge_claimed_at
    if claimed_at is None or claimed_at >= clock.now() - CLAIM_TIMEOUT:
        return account
    await complete_stalled_recharges(
        account_id=account_id, clock=clock, provider=provider, broker=broker
    )
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


async def _record_decline(
    recharge: AutoRecharge, *, reason: str, now: datetime, broker: Broker
) -> None:
    """Settle the recharge as declined and count the decline in the account row itself;
    turn auto-recharge off at the limit, never back on.

    The decline raises AUTO_RECHARGE_FAILED (and AUTO_RECHARGE_DISABLED when it turns
    auto-recharge off): a change with no entry, announced like any other.
    """
    async with in_transaction():
        # --- spend control (issue 12): the decline is a change of the account's own
        locked = await lock_account(recharge.account_id)
        total = locked.subscription_credits + locked.purchased_credits
        raised = [NoticeDraft(NoticeKind.AUTO_RECHARGE_FAILED, total)]
        if (
            locked.auto_recharge_enabled
            and locked.auto_recharge_failures + 1 >= FAILURES_BEFORE_OFF
        ):
            raised.append(NoticeDraft(NoticeKind.AUTO_RECHARGE_DISABLED, total))
        await AutoRecharge.filter(id=recharge.id, state__in=UNSETTLED).update(
            state=RechargeState.DECLINED, failure=reason, settled_at=now
        )
        await Account.filter(id=recharge.account_id).update(
            auto_recharge_failures=F("auto_recharge_failures") + 1,
            auto_recharge_last_failure=reason,
        )
        await Account.filter(
            id=recharge.account_id, auto_recharge_failures__gte=FAILURES_BEFORE_OFF
        ).update(auto_recharge_enabled=False)
        await _release(recharge.account_id, claimed_at=recharge.created_at)
        change = await save_change(locked, [], now=now, raised=raised)
    await announce(broker, change)


async def _credit(
    recharge: AutoRecharge, *, amount_cents: int, clock: Clock, broker: Broker
) -> Change | None:
    """Post the recharge's entry, unless it is credited already; the change, or None.

    NOT_CHARGED counts as not yet credited: a recovery gave up on a charge that its
    process, slower than the claim's timeout, made after all.
    """
    now = clock.now()
    async with in_transaction():
        locked = await lock_account(recharge.account_id)
        # Read under the account lock: whoever credits first is seen by the other.
        if (await AutoRecharge.get(id=recharge.id)).state not in UNSETTLED:
            return None
        posting = Posting(
            LedgerEntryKind.AUTO_RECHARGE,
            CreditBucket.PURCHASED,
            recharge.credits,
            amount_cents=amount_cents,
        )
        entries = await apply_due_allotments(locked, now=now)
        entries += await post(locked, [posting], now=now)
        change = await save_change(locked, entries, now=now)
        await AutoRecharge.filter(id=recharge.id).update(
            state=RechargeState.CREDITED, entry_id=entries[-1].id, settled_at=now
        )
        await Account.filter(id=locked.id).update(
            auto_recharge_failures=0, auto_recharge_last_failure=None
        )
    await announce(broker, change)
    return change
