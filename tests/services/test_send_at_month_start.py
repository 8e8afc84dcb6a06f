"""A send that meets a new subscription month: the month is granted, then the send is paid.

A month can start before the send's first attempt or while it waits for an
auto-recharge; either way the send must still get its one recharge, and never fail
with anything but a domain error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from models.enums import LedgerEntryKind
from services.clock import FrozenClock
from services.errors import InsufficientCredits, PaymentDeclined
from services.payments import Charge, SimulatedPaymentProvider
from services.runtime import Runtime
from tests.services.conftest import (
    Buckets,
    body_of,
    buckets,
    enable_auto_recharge,
    ledger,
    open_shop,
    send,
)

pytestmark = pytest.mark.usefixtures("db")

GRANT, EXPIRY = LedgerEntryKind.ALLOTMENT_GRANT, LedgerEntryKind.ALLOTMENT_EXPIRY
RECHARGE, OUTBOUND = LedgerEntryKind.AUTO_RECHARGE, LedgerEntryKind.OUTBOUND_MESSAGE


@dataclass
class DecliningAfterAMonth(SimulatedPaymentProvider):
    """Declines every charge, which takes so long that a subscription month starts meanwhile."""

    clock: FrozenClock | None = None

    async def charge(
        self, *, reference: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        assert self.clock is not None
        self.clock.advance(timedelta(days=40))
        raise PaymentDeclined("The card was declined.")


async def test_a_send_in_a_new_month_short_of_credits_is_auto_recharged(
    runtime: Runtime, clock: FrozenClock
) -> None:
    # given 1 monthly credit and an auto-recharge that only a shortfall triggers
    shop = await open_shop(runtime, monthly_credits=1, token="tok_visa")
    await enable_auto_recharge(shop.actor, runtime, threshold=0, credits=100)
    # when the next month has started (nobody read the balance) and 2 credits are needed
    clock.advance(timedelta(days=40))
    sent = await send(runtime, shop.actor, shop.inbox, body_of(2))
    # then the month is granted, the shortfall recharged, and the message paid
    kinds = [e.kind for e in await ledger(shop.id)]
    assert kinds == [GRANT, EXPIRY, GRANT, RECHARGE, OUTBOUND, OUTBOUND]
    assert (sent.balance.subscription, sent.balance.purchased) == (0, 99)


async def test_a_month_starting_during_a_declined_recharge_refuses_the_send_cleanly(
    runtime: Runtime, clock: FrozenClock
) -> None:
    # given 1 monthly credit and auto-recharge on a card whose charges decline slowly
    shop = await open_shop(runtime, monthly_credits=1, token="tok_visa")
    await enable_auto_recharge(shop.actor, runtime, threshold=0, credits=100)
    declining = DecliningAfterAMonth(clock=clock)
    slow = Runtime(clock=clock, carrier=runtime.carrier, payments=declining, broker=runtime.broker)
    # when a 2-credit send waits on the declined charge while a new month starts
    with pytest.raises(InsufficientCredits):
        await send(slow, shop.actor, shop.inbox, body_of(2))
    # then the new month is granted and nothing else happened
    assert [e.kind for e in await ledger(shop.id)] == [GRANT, EXPIRY, GRANT]
    assert await buckets(shop.id) == Buckets(1, 0)
