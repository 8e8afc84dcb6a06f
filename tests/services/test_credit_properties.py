"""Property: whatever happens to an account, in any order, its ledger stays true.

Hypothesis draws a plan and a sequence of operations (sends, carrier rejections,
receives, purchases, auto-recharge triggers, delivery reports, months passing) and
runs them against the services on the real database. After every step the
ledger is checked against the account row and against the rules of the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from itertools import count
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from models import Account, LedgerEntry, Message, SubscriptionPeriod
from models.enums import CreditBucket, LedgerEntryKind, MessageStatus
from services.access import Principal
from services.auto_recharge import maybe_auto_recharge
from services.broadcast import LocalBroker
from services.carrier import CarrierRejected
from services.clock import FrozenClock
from services.errors import InsufficientCredits, PaymentDeclined
from services.payments import SimulatedPaymentProvider, set_payment_method
from services.runtime import Runtime
from tests.conftest import START, _empty_tables
from tests.services.conftest import (
    body_of,
    buy,
    enable_auto_recharge,
    ledger,
    open_account,
    open_inbox,
    principal,
    receive,
    report,
    send,
)

SUB, PUR = CreditBucket.SUBSCRIPTION, CreditBucket.PURCHASED
GRANT, EXPIRY = LedgerEntryKind.ALLOTMENT_GRANT, LedgerEntryKind.ALLOTMENT_EXPIRY
REJECT = "!"


class PickyCarrier:
    """Accepts every message except those starting with "!", which it rejects."""

    _ids = count(1)

    async def send(self, *, from_number: str, to_number: str, body: str) -> str:
        if body.startswith(REJECT):
            raise CarrierRejected("rejected")
        return f"SM-out-{next(self._ids)}"


PLANS = st.fixed_dictionaries(
    {
        "monthly_credits": st.integers(0, 40),
        "token": st.sampled_from(["tok_visa", "tok_chargeDeclined"]),
        "auto_recharge": st.booleans(),
        "threshold": st.integers(0, 200),
        "recharge_credits": st.sampled_from([100, 150]),
        "max_per_period": st.integers(1, 3),
    }
)
OPERATIONS = st.one_of(
    st.tuples(st.just("send"), st.integers(1, 10)),
    st.tuples(st.just("send_rejected"), st.integers(1, 10)),
    st.tuples(st.just("receive"), st.integers(0, 15)),
    st.tuples(st.just("buy"), st.integers(100, 300)),
    st.tuples(st.just("recharge"), st.none() | st.integers(1, 30)),
    st.tuples(st.just("fail"), st.integers(0, 30)),
    st.tuples(st.just("deliver"), st.integers(0, 30)),
    st.tuples(st.just("advance"), st.integers(0, 75) | st.sampled_from([31, 62])),
)


@dataclass
class World:
    runtime: Runtime
    clock: FrozenClock
    actor: Principal
    inbox: Any
    max_per_period: int
    sent: list[Message] = field(default_factory=list)
    keys: count = field(default_factory=count)


async def make_world(database: str, plan: dict[str, Any]) -> World:
    await _empty_tables(database)
    clock = FrozenClock(START)
    runtime = Runtime(
        clock=clock,
        carrier=PickyCarrier(),
        payments=SimulatedPaymentProvider(),
        broker=LocalBroker(),
    )
    new = await open_account(clock, monthly_credits=plan["monthly_credits"])
    actor = principal(new)
    await set_payment_method(
        actor=actor, token=plan["token"], provider=runtime.payments, clock=runtime.clock
    )
    if plan["auto_recharge"]:
        await enable_auto_recharge(
            actor,
            runtime,
            threshold=plan["threshold"],
            credits=plan["recharge_credits"],
            max_per_period=plan["max_per_period"],
        )
    inbox = await open_inbox(actor, clock)
    return World(runtime, clock, actor, inbox, plan["max_per_period"])


async def apply(world: World, operation: tuple[str, Any]) -> None:
    """Run one operation; expected refusals are part of the game, anything else fails."""
    name, arg = operation
    runtime, account_id = world.runtime, world.actor.account_id
    if name in ("send", "send_rejected"):
        body = body_of(arg) if name == "send" else REJECT + body_of(arg)[1:]
        try:
            sent = await send(runtime, world.actor, world.inbox, body)
        except InsufficientCredits:
            row = await Account.get(id=account_id)
            assert row.subscription_credits + row.purchased_credits < arg, "refused but covered"
            return
        if sent.message.provider_message_id is not None:
            world.sent.append(sent.message)
    elif name == "receive":
        await receive(runtime, world.inbox, "a" * 153 * arg if arg > 1 else "a" * arg)
    elif name == "buy":
        try:
            await buy(runtime, world.actor, arg, key=f"buy-{next(world.keys)}")
        except PaymentDeclined:
            pass
    elif name == "recharge":
        await maybe_auto_recharge(
            account_id=account_id,
            required=arg,
            runtime=runtime,
        )
    elif name in ("fail", "deliver") and world.sent:
        message = world.sent[-1 - arg % len(world.sent)]
        await report(runtime, message, delivered=name == "deliver")
    elif name == "advance":
        world.clock.advance(timedelta(days=arg, hours=arg % 7))


async def check_ledger(world: World) -> None:
    account_id = world.actor.account_id
    row = await Account.get(id=account_id)
    entries = await ledger(account_id)
    sums = {SUB: 0, PUR: 0}
    for entry in entries:
        if entry.kind is EXPIRY:
            # an expiry takes exactly what was left, and only when something was
            assert -entry.credits == sums[SUB] > 0, entry
        if entry.kind is GRANT and entry.period_index > 0:
            assert sums[SUB] == 0, "a month was granted on top of the last month's leftovers"
        sums[entry.bucket] += entry.credits
        assert sums[SUB] >= 0, "SUBSCRIPTION went negative"
        assert entry.balance_after == sums[SUB] + sums[PUR], entry
    assert (row.subscription_credits, row.purchased_credits) == (sums[SUB], sums[PUR])
    assert row.subscription_credits <= row.monthly_credits, "more than a month's allotment"
    assert entries[-1].balance_after == row.subscription_credits + row.purchased_credits
    months = list(range(row.period_index + 1))
    periods = await SubscriptionPeriod.filter(account_id=account_id).order_by("index")
    assert [p.index for p in periods] == months
    assert [e.period_index for e in entries if e.kind is GRANT] == months
    recharged = [e.period_index for e in entries if e.kind is LedgerEntryKind.AUTO_RECHARGE]
    assert all(recharged.count(month) <= world.max_per_period for month in months)
    priced = {LedgerEntryKind.PURCHASE, LedgerEntryKind.AUTO_RECHARGE}
    assert all((e.amount_cents is not None) == (e.kind in priced) for e in entries)
    await check_messages(entries)


async def check_messages(entries: list[LedgerEntry]) -> None:
    """Each message is charged its credits once, and refunded at most that, to the same buckets."""
    by_message: dict[int, list[LedgerEntry]] = {}
    for entry in entries:
        if entry.message_id is not None:
            by_message.setdefault(entry.message_id, []).append(entry)
    messages = await Message.filter(id__in=list(by_message)).in_bulk(list(by_message), "id")
    for message_id, its in by_message.items():
        message = messages[message_id]
        charged = [e for e in its if e.kind is not LedgerEntryKind.REFUND]
        refunded = [e for e in its if e.kind is LedgerEntryKind.REFUND]
        assert sum(e.credits for e in charged) == -message.credits
        assert [e.bucket for e in charged] in ([], [SUB], [PUR], [SUB, PUR])
        assert not refunded or message.status is MessageStatus.FAILED
        for refund in refunded:
            [paid] = [e for e in charged if e.bucket is refund.bucket]
            assert refund.credits == -paid.credits
            assert refund.bucket is PUR or refund.period_index == paid.period_index


def plan_of(
    monthly: int, *, token: str = "tok_visa", threshold: int | None = None
) -> dict[str, Any]:
    return {
        "monthly_credits": monthly,
        "token": token,
        "auto_recharge": threshold is not None,
        "threshold": threshold or 0,
        "recharge_credits": 100,
        "max_per_period": 2,
    }


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(plan=PLANS, operations=st.lists(OPERATIONS, min_size=3, max_size=20))
# The stories the rules single out, always run besides the random ones:
@example(plan_of(10), [("send", 3), ("advance", 40), ("fail", 0)])  # refund after the month ended
@example(plan_of(3), [("receive", 8), ("buy", 100), ("send", 2)])  # past zero, then paid off
@example(plan_of(2, threshold=0), [("send", 3), ("send", 10), ("send", 10)])  # recharge, then send
@example(plan_of(20, token="tok_chargeDeclined", threshold=50), [("send", 1)] * 4)  # declines
@example(plan_of(30), [("send", 2), ("advance", 75), ("receive", 1), ("send_rejected", 1)])
async def test_any_sequence_of_operations_keeps_the_ledger_true(
    database: str, plan: dict[str, Any], operations: list[tuple[str, Any]]
) -> None:
    world = await make_world(database, plan)
    await check_ledger(world)
    for operation in operations:
        await apply(world, operation)
        await check_ledger(world)
