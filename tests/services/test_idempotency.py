"""Idempotency keys on sends and purchases: the first result, once; another input conflicts."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from models import IdempotencyRecord, Inbox, LedgerEntry, Message
from models.enums import IdempotencyState, LedgerEntryKind
from services.access import Principal
from services.accounts import NewAccount
from services.carrier import SimulatedCarrier
from services.errors import IdempotencyConflict, InsufficientCredits, InvalidValue, PaymentDeclined
from services.idempotency import fingerprint
from services.payments import Charge, SavedMethod, SimulatedPaymentProvider, set_payment_method
from services.runtime import Runtime
from tests.services.conftest import (
    CUSTOMER,
    Buckets,
    body_of,
    buckets,
    buy,
    ledger,
    open_shop,
    send,
)

pytestmark = pytest.mark.usefixtures("db")


@dataclass
class CountingCarrier(SimulatedCarrier):
    calls: int = 0

    async def send(self, *, from_number: str, to_number: str, body: str) -> str:
        self.calls += 1
        return await super().send(from_number=from_number, to_number=to_number, body=body)


@dataclass
class CountingProvider:
    """The simulator, counting every charge attempt (declined ones included)."""

    inner: SimulatedPaymentProvider = field(default_factory=SimulatedPaymentProvider)
    attempts: int = 0

    async def save_method(self, token: str) -> SavedMethod:
        return await self.inner.save_method(token)

    async def charge(
        self, *, reference: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        self.attempts += 1
        return await self.inner.charge(
            reference=reference,
            amount_cents=amount_cents,
            currency=currency,
            idempotency_key=idempotency_key,
        )

    async def find_charge(self, *, idempotency_key: str) -> Charge | None:
        return await self.inner.find_charge(idempotency_key=idempotency_key)


def test_the_fingerprint_ignores_the_order_of_the_input() -> None:
    assert fingerprint({"a": 1, "b": "x"}) == fingerprint({"b": "x", "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


# Sends


async def test_a_repeated_send_key_returns_the_first_message_and_charges_once(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    # given a carrier that counts
    runtime.carrier = carrier = CountingCarrier()
    # when the same send is made twice with one key
    first = await send(runtime, admin, inbox, body_of(2), key="send-1")
    again = await send(runtime, admin, inbox, body_of(2), key="send-1")
    # then one message, one charge, one carrier call, and the first result twice
    assert again.message.id == first.message.id
    assert again.balance == first.balance
    assert carrier.calls == 1
    assert await Message.filter(account_id=account.account.id).count() == 1
    assert await LedgerEntry.filter(kind=LedgerEntryKind.OUTBOUND_MESSAGE).count() == 1
    assert await buckets(account.account.id) == Buckets(998, 0)


@pytest.mark.parametrize(
    ("body", "to"), [(body_of(3), CUSTOMER), (body_of(2), "+14155550124")], ids=["body", "to"]
)
async def test_a_send_key_reused_with_another_input_is_a_conflict(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, body: str, to: str
) -> None:
    # given a first send under the key
    await send(runtime, admin, inbox, body_of(2), key="send-1")
    # when the key comes back with another body or recipient
    with pytest.raises(IdempotencyConflict) as caught:
        await send(runtime, admin, inbox, body, key="send-1", to=to)
    # then nothing more is stored or charged
    assert (caught.value.code, caught.value.field) == ("IDEMPOTENCY_CONFLICT", "idempotency_key")
    assert await Message.filter(account_id=account.account.id).count() == 1
    assert await buckets(account.account.id) == Buckets(998, 0)


async def test_the_same_number_written_differently_is_the_same_send(
    admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    first = await send(runtime, admin, inbox, "Hello", key="k", to="+1 415 555 0123")
    again = await send(runtime, admin, inbox, "Hello", key="k", to="(415) 555-0123")
    assert again.message.id == first.message.id


async def test_send_keys_are_per_account(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime
) -> None:
    # given another account using the same key
    other = await open_shop(runtime, monthly_credits=1000, number="+14155550177")
    mine = await send(runtime, admin, inbox, "Hello", key="shared-key")
    # when
    their_send = await send(runtime, other.actor, other.inbox, "Hello", key="shared-key")
    # then both were sent and charged
    assert their_send.message.id != mine.message.id
    assert await buckets(other.id) == Buckets(999, 0)
    assert await buckets(account.account.id) == Buckets(999, 0)


async def test_a_refused_send_stores_no_key_and_may_be_retried(runtime: Runtime) -> None:
    # given a send refused for lack of credits
    shop = await open_shop(runtime, monthly_credits=2, token="tok_visa")
    with pytest.raises(InsufficientCredits):
        await send(runtime, shop.actor, shop.inbox, body_of(3), key="retry-me")
    assert not await IdempotencyRecord.exists(key="retry-me")
    # when credits were bought and the same send is retried
    await buy(runtime, shop.actor, 100)
    sent = await send(runtime, shop.actor, shop.inbox, body_of(3), key="retry-me")
    # then it goes through
    assert sent.balance.total == 99


@pytest.mark.parametrize("key", ["", "   ", "k" * 256])
async def test_a_blank_or_overlong_key_is_invalid(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, key: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        await send(runtime, admin, inbox, "Hello", key=key)
    assert caught.value.field == "idempotency_key"
    assert await Message.all().count() == 0


# Purchases


async def test_a_repeated_purchase_key_returns_the_first_entry_and_charges_once(
    account: NewAccount, admin: Principal, runtime: Runtime, payments, card
) -> None:
    # when the same purchase is made twice with one key
    first = await buy(runtime, admin, 300, key="buy-1")
    again = await buy(runtime, admin, 300, key="buy-1")
    # then
    assert again.entry.id == first.entry.id
    assert again.balance == first.balance
    assert len(payments.charges) == 1
    assert await LedgerEntry.filter(kind=LedgerEntryKind.PURCHASE).count() == 1
    assert await buckets(account.account.id) == Buckets(1000, 300)


async def test_a_purchase_key_reused_with_other_credits_is_a_conflict(
    account: NewAccount, admin: Principal, runtime: Runtime, payments, card
) -> None:
    await buy(runtime, admin, 300, key="buy-1")
    with pytest.raises(IdempotencyConflict) as caught:
        await buy(runtime, admin, 400, key="buy-1")
    assert caught.value.field == "idempotency_key"
    assert len(payments.charges) == 1
    assert await buckets(account.account.id) == Buckets(1000, 300)


async def test_a_declined_purchase_key_repeated_returns_the_same_decline(
    account: NewAccount, admin: Principal, runtime: Runtime
) -> None:
    # given a purchase declined under a key
    runtime.payments = provider = CountingProvider()
    await set_payment_method(
        actor=admin, token="tok_chargeDeclined", provider=provider, clock=runtime.clock
    )
    with pytest.raises(PaymentDeclined) as first:
        await buy(runtime, admin, 100, key="buy-1")
    # when the key is repeated, even after a working card was saved
    await set_payment_method(actor=admin, token="tok_visa", provider=provider, clock=runtime.clock)
    with pytest.raises(PaymentDeclined) as again:
        await buy(runtime, admin, 100, key="buy-1")
    # then the first outcome comes back, without asking the provider again
    assert again.value.message == first.value.message
    assert provider.attempts == 1
    assert await buckets(account.account.id) == Buckets(1000, 0)
    record = await IdempotencyRecord.get(key="buy-1")
    assert record.state is IdempotencyState.FAILED


async def test_purchase_and_send_keys_do_not_collide(
    account: NewAccount, admin: Principal, inbox: Inbox, runtime: Runtime, card
) -> None:
    await buy(runtime, admin, 100, key="same")
    await send(runtime, admin, inbox, "Hello", key="same")
    assert await buckets(account.account.id) == Buckets(999, 100)


class FlakyProvider(CountingProvider):
    async def charge(
        self, *, reference: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        if self.attempts == 0:
            self.attempts += 1
            raise ConnectionError("provider unreachable")
        return await super().charge(
            reference=reference,
            amount_cents=amount_cents,
            currency=currency,
            idempotency_key=idempotency_key,
        )


async def test_an_unexpected_provider_error_frees_the_key_for_a_retry(
    account: NewAccount, admin: Principal, runtime: Runtime
) -> None:
    # given a provider that is unreachable once
    runtime.payments = provider = FlakyProvider()
    await set_payment_method(actor=admin, token="tok_visa", provider=provider, clock=runtime.clock)
    with pytest.raises(ConnectionError):
        await buy(runtime, admin, 100, key="buy-1")
    # when the purchase is retried with its key
    purchase = await buy(runtime, admin, 100, key="buy-1")
    # then it runs (once)
    assert purchase.balance.purchased == 100
    assert len(provider.inner.charges) == 1
    kinds = [e.kind for e in await ledger(account.account.id)]
    assert kinds.count(LedgerEntryKind.PURCHASE) == 1
