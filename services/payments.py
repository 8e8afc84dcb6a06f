"""Payments: the provider interface, its built-in simulator, and saving a payment method.

A real provider (Stripe, Braintree …) plugs in behind `PaymentProvider`. Charges
carry an idempotency key, as real providers accept, so a retry after a crash
never charges twice; and a charge can be looked up by its key, so that work
interrupted between the charge and its ledger entry finds out whether the charge
was made.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Protocol

from models import Account
from models.enums import AuditAction
from services.access import Principal, require_admin
from services.audit import audited
from services.clock import Clock
from services.errors import InvalidValue, PaymentDeclined


@dataclass(frozen=True, slots=True)
class SavedMethod:
    brand: str
    last4: str
    reference: str


@dataclass(frozen=True, slots=True)
class Charge:
    id: str
    amount_cents: int
    currency: str


class PaymentProvider(Protocol):
    async def save_method(self, token: str) -> SavedMethod:
        """Turn a client-side token into a saved method; InvalidValue for a bad token."""
        ...

    async def charge(
        self, *, reference: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        """Charge a saved method; PaymentDeclined when the provider declines."""
        ...

    async def find_charge(self, *, idempotency_key: str) -> Charge | None:
        """The successful charge made with this idempotency key, or None if none was made."""
        ...


_TEST_CARDS = {
    "tok_visa": ("visa", "4242"),
    "tok_mastercard": ("mastercard", "4444"),
    "tok_chargeDeclined": ("visa", "0002"),
}
_DECLINING = "pm_sim_tok_chargeDeclined"


@dataclass
class SimulatedPaymentProvider:
    """Provider-style test tokens; `tok_chargeDeclined` saves, and every charge on it declines."""

    charges: dict[str, Charge] = field(default_factory=dict)

    async def save_method(self, token: str) -> SavedMethod:
        card = _TEST_CARDS.get(token)
        if card is None:
            raise InvalidValue(
                "Unknown payment token; the simulator accepts tok_visa, tok_mastercard "
                "and tok_chargeDeclined.",
                field="token",
            )
        return SavedMethod(brand=card[0], last4=card[1], reference=f"pm_sim_{token}")

    async def charge(
        self, *, reference: str, amount_cents: int, currency: str, idempotency_key: str
    ) -> Charge:
        if reference == _DECLINING:
            raise PaymentDeclined("The card was declined.")
        if idempotency_key not in self.charges:
            self.charges[idempotency_key] = Charge(
                id=f"ch_sim_{uuid.uuid4().hex}", amount_cents=amount_cents, currency=currency
            )
        return self.charges[idempotency_key]

    async def find_charge(self, *, idempotency_key: str) -> Charge | None:
        return self.charges.get(idempotency_key)


async def set_payment_method(
    *, actor: Principal, token: str, provider: PaymentProvider, clock: Clock
) -> SavedMethod:
    """Save the account's payment method (replacing any earlier one); audited by brand and last
    four digits only (PAYMENT_METHOD_SET), never the token."""
    require_admin(actor, "set the payment method")
    saved = await provider.save_method(token.strip())
    async with audited(actor=actor, action=AuditAction.PAYMENT_METHOD_SET, clock=clock) as entry:
        account = await Account.select_for_update().get(id=actor.account_id)
        await Account.filter(id=actor.account_id).update(
            payment_brand=saved.brand, payment_last4=saved.last4, payment_reference=saved.reference
        )
        entry.before = {"paymentMethod": _card(saved_method(account))}
        entry.after = {"paymentMethod": _card(saved)}
    return saved


def _card(method: SavedMethod | None) -> dict[str, str] | None:
    return None if method is None else {"brand": method.brand, "last4": method.last4}


def saved_method(account: Account) -> SavedMethod | None:
    if account.payment_reference is None:
        return None
    return SavedMethod(
        brand=account.payment_brand or "",
        last4=account.payment_last4 or "",
        reference=account.payment_reference,
    )
