"""Helpers for the money-path tests: an inbox, a saved card, and short calls into the services.

Every helper goes through the public service functions with the test's `runtime`
(frozen clock, simulated carrier and payments, local broker), so the tests read as
"send", "receive", "buy", "fail" and then look at the rows those left behind.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from models import Account, Inbox, LedgerEntry, Message
from models.enums import CreditBucket, Role
from services.access import Principal
from services.accounts import NewAccount, PlanTerms, create_account
from services.auto_recharge import AutoRechargeState, update_auto_recharge
from services.broadcast import BalanceEvent
from services.clock import Clock
from services.inboxes import create_shared_inbox
from services.messaging import Received, Sent, receive_message, record_delivery_status, send_message
from services.payments import SavedMethod, set_payment_method
from services.purchases import Purchase, buy_credits
from services.runtime import Runtime

INBOX_NUMBER = "+14155550100"
CUSTOMER = "+14155550123"
REGION = "US"


def body_of(segments: int) -> str:
    """A GSM-7 body that is exactly `segments` segments long (160 units, then 153 a segment)."""
    return "a" * (160 if segments == 1 else 153 * segments)


def principal(new: NewAccount) -> Principal:
    """The first admin of a freshly created account."""
    return Principal(
        account_id=new.account.id,
        member_id=new.admin.id,
        role=Role.ADMIN,
        token_id=new.token.token.id,
    )


async def open_account(
    clock: Clock, *, monthly_credits: int = 1000, price_cents: int = 2, email: str = "o@x.example"
) -> NewAccount:
    """An account created at the clock's now (its subscription-month anchor)."""
    return await create_account(
        name="Other",
        admin_name="Olga",
        admin_email=email,
        plan=PlanTerms(monthly_credits=monthly_credits, price_per_credit_cents=price_cents),
        clock=clock,
    )


async def open_inbox(actor: Principal, clock: Clock, *, number: str = INBOX_NUMBER) -> Inbox:
    """A shared inbox with no listed members: admins may send from every inbox."""
    return await create_shared_inbox(
        actor=actor, name="Support", phone_number=number, member_ids=[], region=REGION, clock=clock
    )


@dataclass(frozen=True)
class Shop:
    """A second account with its admin and an inbox, for plans other than the fixture's."""

    new: NewAccount
    actor: Principal
    inbox: Inbox

    @property
    def id(self) -> int:
        account_id: int = self.new.account.id
        return account_id


async def open_shop(
    runtime: Runtime,
    *,
    monthly_credits: int,
    purchased: int = 0,
    token: str | None = None,
    number: str = INBOX_NUMBER,
) -> Shop:
    """An account created now with `monthly_credits`, a card when asked, `purchased` bought."""
    new = await open_account(runtime.clock, monthly_credits=monthly_credits)
    actor = principal(new)
    if token is not None or purchased:
        await set_payment_method(
            actor=actor, token=token or "tok_visa", provider=runtime.payments, clock=runtime.clock
        )
    if purchased:
        await buy(runtime, actor, purchased, key="opening")
    return Shop(new, actor, await open_inbox(actor, runtime.clock, number=number))


@pytest.fixture
async def inbox(admin: Principal, clock: Clock) -> Inbox:
    return await open_inbox(admin, clock)


@pytest.fixture
async def card(admin: Principal, runtime: Runtime) -> SavedMethod:
    return await set_payment_method(
        actor=admin, token="tok_visa", provider=runtime.payments, clock=runtime.clock
    )


async def send(
    runtime: Runtime,
    actor: Principal,
    inbox: Inbox,
    body: str = "Hello",
    *,
    key: str | None = None,
    to: str = CUSTOMER,
) -> Sent:
    return await send_message(
        actor=actor,
        inbox_id=inbox.id,
        to=to,
        body=body,
        idempotency_key=key,
        region=REGION,
        runtime=runtime,
    )


_provider_ids = iter(range(1, 10**9))


async def receive(
    runtime: Runtime, inbox: Inbox, body: str = "Hi", *, provider_id: str | None = None
) -> Received:
    return await receive_message(
        from_number=CUSTOMER,
        to_number=inbox.phone_number,
        body=body,
        provider_message_id=provider_id or f"in-{next(_provider_ids)}",
        region=REGION,
        runtime=runtime,
    )


async def buy(runtime: Runtime, actor: Principal, credits: int, *, key: str = "buy-1") -> Purchase:
    return await buy_credits(
        actor=actor,
        credits=credits,
        idempotency_key=key,
        runtime=runtime,
    )


async def report(runtime: Runtime, message: Message, *, delivered: bool) -> Message:
    """The carrier's delivery report for an outbound message (failed refunds)."""
    assert message.provider_message_id is not None
    return await record_delivery_status(
        provider_message_id=message.provider_message_id,
        delivered=delivered,
        runtime=runtime,
    )


async def enable_auto_recharge(
    actor: Principal,
    runtime: Runtime,
    *,
    threshold: int,
    credits: int = 500,
    max_per_period: int = 3,
) -> AutoRechargeState:
    return await update_auto_recharge(
        actor=actor,
        enabled=True,
        threshold_credits=threshold,
        recharge_credits=credits,
        max_recharges_per_period=max_per_period,
        clock=runtime.clock,
    )


@dataclass(frozen=True)
class Buckets:
    subscription: int
    purchased: int

    @property
    def total(self) -> int:
        return self.subscription + self.purchased


async def buckets(account_id: int) -> Buckets:
    """The account row's bucket columns, read fresh."""
    row = await Account.get(id=account_id)
    return Buckets(row.subscription_credits, row.purchased_credits)


async def ledger(account_id: int) -> list[LedgerEntry]:
    """The account's entries in commit order."""
    return await LedgerEntry.filter(account_id=account_id).order_by("id")


async def assert_ledger_balances(account_id: int) -> None:
    """Each bucket column is the sum of its entries, and balance_after is the running total."""
    entries = await ledger(account_id)
    sums = {CreditBucket.SUBSCRIPTION: 0, CreditBucket.PURCHASED: 0}
    for entry in entries:
        sums[entry.bucket] += entry.credits
        assert entry.balance_after == sum(sums.values()), entry
    assert await buckets(account_id) == Buckets(
        sums[CreditBucket.SUBSCRIPTION], sums[CreditBucket.PURCHASED]
    )


class EventReader:
    """A live subscription to one account's balance events, already listening."""

    def __init__(self, runtime: Runtime, account_id: int) -> None:
        events = runtime.broker.subscribe(account_id)
        self._events = events
        self._next: asyncio.Future[BalanceEvent | None] | None = None

    async def start(self) -> None:
        self._next = asyncio.ensure_future(anext(self._events))
        await asyncio.sleep(0)  # let the subscriber register its queue before anyone publishes

    async def next(self) -> BalanceEvent:
        assert self._next is not None
        event = await asyncio.wait_for(self._next, 1)
        self._next = asyncio.ensure_future(anext(self._events))
        assert event is not None, "the subscriber lagged"
        return event

    async def pending(self) -> bool:
        """Whether another event is waiting (checked without blocking the test)."""
        await asyncio.sleep(0)
        assert self._next is not None
        return self._next.done()

    async def close(self) -> None:
        if self._next is not None:
            self._next.cancel()
            await asyncio.gather(self._next, return_exceptions=True)
        await self._events.aclose()
