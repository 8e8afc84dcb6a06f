"""Buying credits: charge the saved payment method, then add PURCHASED credits."""

from __future__ import annotations

from dataclasses import dataclass

from models import Account, LedgerEntry
from models.enums import CreditBucket, LedgerEntryKind
from services import idempotency, ledger
from services.access import Principal, require_admin
from services.balance import LARGEST_AMOUNT, Balance, Posting, balance_from_json, balance_to_json
from services.errors import InvalidValue, PaymentDeclined, PaymentMethodRequired
from services.ledger import Tx
from services.payments import saved_method
from services.runtime import Runtime

MIN_CREDITS = 100
MAX_CREDITS = 1_000_000
OPERATION = "buy_credits"


@dataclass(frozen=True, slots=True)
class Purchase:
    entry: LedgerEntry
    balance: Balance


def check_credit_amount(credits: int, *, field: str) -> int:
    if not MIN_CREDITS <= credits <= MAX_CREDITS:
        raise InvalidValue(
            f"Buy {MIN_CREDITS:,} to {MAX_CREDITS:,} credits at a time.", field=field
        )
    return credits


def check_amount_fits(account: Account, credits: int, *, field: str) -> None:
    """Refuse credits whose amount at the account's price passes the contract's 32-bit Int
    (LARGEST_AMOUNT). Plans are priced so that it always fits; an account priced before
    that rule may not."""
    if credits * account.price_per_credit_cents > LARGEST_AMOUNT:
        most = LARGEST_AMOUNT // account.price_per_credit_cents
        raise InvalidValue(
            f"A charge can be at most {LARGEST_AMOUNT:,} cents: at most {most:,} credits"
            " at this account's price.",
            field=field,
        )


def _check_purchase_fits(account: Account, credits: int) -> None:
    """Refuse, before anything is charged, a purchase the ledger could not record: its
    amount must fit, and the balance keeps room for the next month's grant on top."""
    check_amount_fits(account, credits, field="credits")
    room = LARGEST_AMOUNT - account.monthly_credits - account.purchased_credits
    if credits > room:
        raise InvalidValue(
            f"The balance can hold at most {LARGEST_AMOUNT:,} credits with the monthly "
            f"allotment: buy at most {max(room, 0):,} more.",
            field="credits",
        )


async def buy_credits(
    *, runtime: Runtime, actor: Principal, credits: int, idempotency_key: str
) -> Purchase:
    """Charge credits x price per credit (cents) and add PURCHASED credits, once per key."""
    require_admin(actor, "buy credits")
    check_credit_amount(credits, field="credits")
    key = idempotency.clean_key(idempotency_key)
    account = await Account.get(id=actor.account_id)
    method = saved_method(account)
    if method is None:
        raise PaymentMethodRequired("Save a payment method before buying credits.")
    _check_purchase_fits(account, credits)
    digest = idempotency.fingerprint({"credits": credits})
    claimed = await idempotency.claim(
        account_id=account.id, operation=OPERATION, key=key, digest=digest, now=runtime.clock.now()
    )
    if not isinstance(claimed, idempotency.Claim):
        return await _first_result(claimed)
    amount = credits * account.price_per_credit_cents
    try:
        await runtime.payments.charge(
            reference=method.reference,
            amount_cents=amount,
            currency=account.currency,
            idempotency_key=f"purchase:{account.id}:{key}",
        )
    except PaymentDeclined as declined:
        await idempotency.settle_failed(claimed, error=declined, now=runtime.clock.now())
        raise
    except BaseException:
        await idempotency.release(claimed)
        raise
    purchase = Posting(
        LedgerEntryKind.PURCHASE, CreditBucket.PURCHASED, credits, amount_cents=amount
    )

    async def add_credits(tx: Tx) -> LedgerEntry:
        entry = await tx.post(purchase)
        result = {"entry_id": entry.id, "balance": balance_to_json(tx.balance_after())}
        await idempotency.settle_in_change(tx.conn, claimed, result=result, now=tx.now)
        return entry

    # Credits bought on top of a negative PURCHASED bucket can still leave the total
    # below the auto-recharge threshold: that change triggers it like any other.
    committed = await ledger.commit(runtime, account.id, add_credits)
    assert committed.balance is not None
    return Purchase(entry=committed.value, balance=committed.balance)


async def _first_result(result: dict[str, object]) -> Purchase:
    entry = await LedgerEntry.get(id=result["entry_id"])
    balance = result["balance"]
    assert isinstance(balance, dict)
    return Purchase(entry=entry, balance=balance_from_json(balance))
