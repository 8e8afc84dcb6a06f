"""The demo account that `make run` seeds, so a newcomer has something to query."""

from __future__ import annotations

from dataclasses import dataclass

from models import Account, Member
from models.enums import Role, WeekStart
from services.access import Principal
from services.accounts import PlanTerms, create_account
from services.clock import Clock
from services.inboxes import create_shared_inbox
from services.members import create_member
from services.tokens import add_token

DEMO_NAME = "Demo Dental"
DEMO_ADMIN_EMAIL = "ada@example.com"


@dataclass(frozen=True, slots=True)
class SeededDemo:
    account_name: str
    created: bool
    tokens: list[tuple[str, str]]


async def seed_demo(*, region: str, clock: Clock) -> SeededDemo:
    """Create the demo account when the database has none; either way, issue fresh tokens.

    Tokens are stored only as hashes, so a second run cannot show the first run's
    tokens again: it issues new ones for the same members instead.
    """
    if not await Account.exists():
        await _create_demo(region=region, clock=clock)
        created = True
    else:
        created = False
    admin = await Member.filter(email_key=DEMO_ADMIN_EMAIL).first()
    if admin is None:
        return SeededDemo(account_name=DEMO_NAME, created=False, tokens=[])
    people = await Member.filter(account_id=admin.account_id).order_by("id")
    tokens = []
    for member in people:
        issued = await add_token(member=member, name="make run", now=clock.now())
        tokens.append((f"{member.name} ({member.role.value})", issued.secret))
    return SeededDemo(account_name=DEMO_NAME, created=created, tokens=tokens)


async def _create_demo(*, region: str, clock: Clock) -> None:
    new = await create_account(
        name=DEMO_NAME,
        admin_name="Ada Admin",
        admin_email=DEMO_ADMIN_EMAIL,
        timezone="America/New_York",
        week_start=WeekStart.SUNDAY,
        plan=PlanTerms(name="Growth", monthly_credits=5000, price_per_credit_cents=2),
        clock=clock,
    )
    admin = Principal(
        account_id=new.account.id,
        member_id=new.admin.id,
        role=Role.ADMIN,
        token_id=new.token.token.id,
    )
    ben = await create_member(
        actor=admin,
        name="Ben Member",
        email="ben@example.com",
        role=Role.MEMBER,
        personal_phone_number="+1 (415) 555-0101",
        region=region,
        clock=clock,
    )
    await create_member(
        actor=admin,
        name="Cleo Member",
        email="cleo@example.com",
        role=Role.MEMBER,
        personal_phone_number="+1 (415) 555-0102",
        region=region,
        clock=clock,
    )
    await create_shared_inbox(
        actor=admin,
        name="Front desk",
        phone_number="+1 (415) 555-0100",
        member_ids=[ben.id],
        region=region,
        clock=clock,
    )
