"""Accounts: creation (with the first admin and its token) and settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from zoneinfo import available_timezones

from tortoise.transactions import in_transaction

from models import Account, Member
from models.enums import AuditAction, Role, WeekStart
from services import audit, ledger
from services.access import Principal, require_admin
from services.balance import LARGEST_AMOUNT
from services.clock import Clock
from services.errors import InvalidValue, NotFound
from services.members import add_member
from services.purchases import MAX_CREDITS
from services.rollups import rebuild_usage
from services.tokens import IssuedToken, add_token
from services.validation import clean_name, quoted


@dataclass(frozen=True, slots=True)
class PlanTerms:
    name: str = "Standard"
    monthly_credits: int = 1000
    price_per_credit_cents: int = 2
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class NewAccount:
    account: Account
    admin: Member
    token: IssuedToken


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def clean_timezone(name: str, *, field: str = "timezone") -> str:
    """An IANA zone name as given, or InvalidValue."""
    if name not in _zones():
        raise InvalidValue(
            f"{quoted(name)} is not an IANA time zone (e.g. America/New_York).", field=field
        )
    return name


def _clean_plan(plan: PlanTerms) -> PlanTerms:
    if not 0 <= plan.monthly_credits <= 10_000_000:
        raise InvalidValue("Monthly credits must be 0 to 10,000,000.", field="monthly_credits")
    # The largest purchase (1,000,000 credits) must be chargeable in an amount the
    # contract's 32-bit amountCents can show: at most 2,147 cents a credit.
    if not 1 <= plan.price_per_credit_cents <= LARGEST_AMOUNT // MAX_CREDITS:
        raise InvalidValue(
            f"The price per credit must be 1 to {LARGEST_AMOUNT // MAX_CREDITS:,} cents.",
            field="price_cents",
        )
    return plan


async def create_account(
    *,
    name: str,
    admin_name: str,
    admin_email: str,
    timezone: str = "UTC",
    week_start: WeekStart = WeekStart.MONDAY,
    plan: PlanTerms = PlanTerms(),
    clock: Clock,
) -> NewAccount:
    """Create an account with its first ADMIN and an API token for that admin, atomically."""
    plan = _clean_plan(plan)
    now = clock.now()
    async with in_transaction() as conn:
        account = await Account.create(
            name=clean_name(name, field="name"),
            timezone=clean_timezone(timezone),
            week_start=week_start,
            created_at=now,
            plan_name=plan.name,
            monthly_credits=plan.monthly_credits,
            price_per_credit_cents=plan.price_per_credit_cents,
            currency=plan.currency,
        )
        admin = await add_member(
            account=account, name=admin_name, email=admin_email, role=Role.ADMIN, now=now
        )
        token = await add_token(member=admin, name="Created with the account", now=now)
        await ledger.open_account(account, conn)
    return NewAccount(account=account, admin=admin, token=token)


async def get_account(account_id: int) -> Account:
    account = await Account.get_or_none(id=account_id)
    if account is None:
        raise NotFound("No such account.")
    return account


async def update_account(
    *,
    actor: Principal,
    name: str | None = None,
    timezone: str | None = None,
    week_start: WeekStart | None = None,
    clock: Clock,
) -> Account:
    """Change the account's name, time zone or week start; unset arguments stay as they are.

    A new time zone regroups the account's whole usage history in it (one pass over its
    messages, in the same transaction). The change is audited (ACCOUNT_UPDATED).
    """
    require_admin(actor, "change the account")
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = clean_name(name, field="name")
    if timezone is not None:
        changes["timezone"] = clean_timezone(timezone)
    if week_start is not None:
        changes["week_start"] = week_start
    if changes:
        # Messages are counted (and refunded) under this same lock, in the zone they read
        # on this row: each lands before the rebuild, which regroups it, or after it.
        async with ledger.exclusive(actor.account_id) as account:
            await Account.filter(id=actor.account_id).update(**changes)
            if timezone is not None and timezone != account.timezone:
                await rebuild_usage(account_id=actor.account_id, timezone=timezone)
            # In the transaction that changes it (services/audit.py's rule).
            await audit.record(
                account_id=actor.account_id,
                actor=actor,
                action=AuditAction.ACCOUNT_UPDATED,
                now=clock.now(),
                before={_INPUT_NAMES[k]: str(getattr(account, k)) for k in changes},
                after={_INPUT_NAMES[k]: str(v) for k, v in changes.items()},
            )
    return await get_account(actor.account_id)


# The columns updateAccount changes, by their input field's name in the schema.
_INPUT_NAMES = {"name": "name", "timezone": "timezone", "week_start": "weekStart"}
