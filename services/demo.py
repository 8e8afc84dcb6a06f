"""Demo data: the account `make run` seeds, and large accounts for benchmarks.

The demo account is created 120 days in the past and grown a realistic history
(services/seeding.py): a daily and weekly rhythm, GSM and Unicode bodies, monthly
allotments, auto-recharges, then a purchase and auto-recharge switched on today.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from models import Account, Member
from models.enums import Role, WeekStart
from services.access import Principal
from services.accounts import NewAccount, PlanTerms, create_account
from services.auto_recharge import update_auto_recharge
from services.clock import Clock, FrozenClock
from services.inboxes import create_shared_inbox
from services.members import create_member
from services.payments import set_payment_method
from services.purchases import buy_credits
from services.runtime import Runtime
from services.seeding import grow_history
from services.tokens import add_token

DEMO_NAME = "Demo Dental"
DEMO_ADMIN_EMAIL = "ada@example.com"
DEMO_DAYS = 120
DEMO_MESSAGES = 6000


@dataclass(frozen=True, slots=True)
class SeededDemo:
    account_name: str
    created: bool
    tokens: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class LoadAccount:
    account_id: int
    admin_token: str
    messages: int


async def seed_demo(*, region: str, clock: Clock) -> SeededDemo:
    """Create the demo account when the database has none; either way, issue fresh tokens.

    Tokens are stored only as hashes, so a second run cannot show the first run's
    tokens again: it issues new ones for the same members instead.
    """
    created = not await Account.exists()
    if created:
        await _create_demo(region=region, clock=clock)
    admin = await Member.filter(email_key=DEMO_ADMIN_EMAIL).first()
    if admin is None:
        return SeededDemo(account_name=DEMO_NAME, created=False, tokens=[])
    people = await Member.filter(account_id=admin.account_id).order_by("id")
    tokens = []
    for member in people:
        issued = await add_token(member=member, name="make run", now=clock.now())
        tokens.append((f"{member.name} ({member.role.value})", issued.secret))
    return SeededDemo(account_name=DEMO_NAME, created=created, tokens=tokens)


async def _backdated_account(
    *, name: str, email: str, days: int, plan: PlanTerms, clock: Clock
) -> tuple[NewAccount, Principal]:
    new = await create_account(
        name=name,
        admin_name="Ada Admin",
        admin_email=email,
        timezone="America/New_York",
        week_start=WeekStart.SUNDAY,
        plan=plan,
        clock=FrozenClock(clock.now() - timedelta(days=days)),
    )
    admin = Principal(new.account.id, new.admin.id, Role.ADMIN, new.token.token.id)
    return new, admin


async def _add_member(
    admin: Principal, *, name: str, email: str, phone: str, region: str, clock: Clock
) -> Member:
    return await create_member(
        actor=admin,
        name=name,
        email=email,
        role=Role.MEMBER,
        personal_phone_number=phone,
        region=region,
        clock=clock,
    )


async def _create_demo(*, region: str, clock: Clock) -> None:
    _, admin = await _backdated_account(
        name=DEMO_NAME,
        email=DEMO_ADMIN_EMAIL,
        days=DEMO_DAYS,
        plan=PlanTerms(name="Growth", monthly_credits=3000, price_per_credit_cents=2),
        clock=clock,
    )
    ben = await _add_member(
        admin, name="Ben Member", email="ben@example.com", phone="+1 (415) 555-0101",
        region=region, clock=clock,
    )  # fmt: skip
    await _add_member(
        admin, name="Cleo Member", email="cleo@example.com", phone="+1 (415) 555-0102",
        region=region, clock=clock,
    )  # fmt: skip
    await create_shared_inbox(
        actor=admin,
        name="Front desk",
        phone_number="+1 (415) 555-0100",
        member_ids=[ben.id],
        region=region,
        clock=clock,
    )
    await grow_history(
        account_id=admin.account_id, messages=DEMO_MESSAGES, days=DEMO_DAYS, now=clock.now()
    )
    runtime = Runtime(clock=clock)
    await set_payment_method(actor=admin, token="tok_visa", provider=runtime.payments, clock=clock)
    await buy_credits(runtime=runtime, actor=admin, credits=2000, idempotency_key="demo-seed")
    await update_auto_recharge(
        actor=admin, enabled=True, threshold_credits=500, recharge_credits=2000, clock=clock
    )


async def seed_load_account(
    *,
    messages: int,
    days: int,
    region: str,
    clock: Clock,
    progress: Callable[[int], None] | None = None,
) -> LoadAccount:
    """A new account with 20 members, 5 shared inboxes and `messages` messages over `days` days."""
    number = await Account.all().count() + 1
    new, admin = await _backdated_account(
        name=f"Load test {number}",
        email=f"load{number}@example.com",
        days=days + 1,
        plan=PlanTerms(name="Scale", monthly_credits=100_000, price_per_credit_cents=1),
        clock=clock,
    )
    base = 2_000_000 + number * 100
    for n in range(20):
        await _add_member(
            admin, name=f"Member {n + 1}", email=f"m{n + 1}.{number}@example.com",
            phone=f"+1 (628) {base // 10_000 % 1000:03d}-{(base + n) % 10_000:04d}",
            region=region, clock=clock,
        )  # fmt: skip
    for n in range(5):
        await create_shared_inbox(
            actor=admin,
            name=f"Shared {n + 1}",
            phone_number=f"+1 (628) {base // 10_000 % 1000:03d}-{(base + 50 + n) % 10_000:04d}",
            member_ids=[],
            region=region,
            clock=clock,
        )
    written = await grow_history(
        account_id=new.account.id, messages=messages, days=days, now=clock.now(), progress=progress
    )
    return LoadAccount(account_id=new.account.id, admin_token=new.token.secret, messages=written)
