"""A fresh account with a member who owns a personal inbox, made through the services."""

from __future__ import annotations

from dataclasses import dataclass

from models import Inbox
from models.db import close_database, migrate_database, open_database
from models.enums import Role
from services import accounts, members, tokens
from services.access import Principal
from services.clock import SystemClock

MONTHLY_CREDITS = 10_000_000
PERSONAL_NUMBER = "(415) 555-0142"


@dataclass(frozen=True, slots=True)
class Seeded:
    account_id: int
    member_id: int
    inbox_id: int
    token_id: int

    @property
    def actor(self) -> Principal:
        return Principal(
            account_id=self.account_id,
            member_id=self.member_id,
            role=Role.MEMBER,
            token_id=self.token_id,
        )


async def seed(database_url: str, *, keep_open: bool = False) -> Seeded:
    """Migrate `database_url` and add the bench account; leave Tortoise open if asked."""
    await migrate_database(database_url)
    await open_database(database_url)
    try:
        clock = SystemClock()
        created = await accounts.create_account(
            name="Bench",
            admin_name="Admin",
            admin_email="admin@bench.example",
            plan=accounts.PlanTerms(monthly_credits=MONTHLY_CREDITS),
            clock=clock,
        )
        admin = Principal(
            account_id=created.account.id,
            member_id=created.admin.id,
            role=Role.ADMIN,
            token_id=created.token.token.id,
        )
        member = await members.create_member(
            actor=admin,
            name="Sender",
            email="sender@bench.example",
            role=Role.MEMBER,
            personal_phone_number=PERSONAL_NUMBER,
            region="US",
            clock=clock,
        )
        issued = await tokens.add_token(member=member, name="bench", now=clock.now())
        inbox = await Inbox.get(owner_id=member.id)
        return Seeded(
            account_id=created.account.id,
            member_id=member.id,
            inbox_id=inbox.id,
            token_id=issued.token.id,
        )
    finally:
        if not keep_open:
            await close_database()
