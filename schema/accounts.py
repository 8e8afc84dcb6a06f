"""The account: Query.viewer, Query.account, the Account and Plan types, updateAccount."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from api.context import Context
from models import Account as AccountRow
from schema.enums import WeekStart
from schema.errors import UserError, reports_user_errors
from schema.ids import to_id
from schema.inboxes import Inbox
from schema.members import Member
from services import accounts, inboxes, members


@strawberry.type
class Plan:
    name: str
    monthly_credits: int = strawberry.field(
        description="Credits granted at the start of every subscription month; unused ones expire."
    )
    price_per_credit_cents: int
    currency: str


@strawberry.type
class Account:
    id: strawberry.ID
    name: str
    timezone: str = strawberry.field(description="IANA zone, e.g. America/New_York.")
    week_start: WeekStart
    created_at: datetime
    plan: Plan
    key: strawberry.Private[int]

    @classmethod
    def from_model(cls, row: AccountRow) -> Account:
        return cls(
            id=to_id(row.id),
            name=row.name,
            timezone=row.timezone,
            week_start=row.week_start,
            created_at=row.created_at,
            plan=Plan(
                name=row.plan_name,
                monthly_credits=row.monthly_credits,
                price_per_credit_cents=row.price_per_credit_cents,
                currency=row.currency,
            ),
            key=row.id,
        )

    @strawberry.field
    async def members(self) -> list[Member]:
        return [Member.from_model(row) for row in await members.list_members(self.key)]

    @strawberry.field(description="A MEMBER sees the inboxes it may send from.")
    async def inboxes(self, info: strawberry.Info[Context, Any]) -> list[Inbox]:
        return [Inbox.from_model(row) for row in await inboxes.visible_inboxes(info.context.actor)]


@strawberry.type
class AccountQuery:
    @strawberry.field(description="The member that owns the token.")
    async def viewer(self, info: strawberry.Info[Context, Any]) -> Member:
        actor = info.context.actor
        row = await members.get_member(account_id=actor.account_id, member_id=actor.member_id)
        return Member.from_model(row)

    @strawberry.field(description="The viewer's account.")
    async def account(self, info: strawberry.Info[Context, Any]) -> Account:
        return Account.from_model(await accounts.get_account(info.context.actor.account_id))


@strawberry.input
class UpdateAccountInput:
    name: str | None = None
    timezone: str | None = None
    week_start: WeekStart | None = None


@strawberry.type
class UpdateAccountPayload:
    account: Account | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AccountMutation:
    @strawberry.mutation(description="ADMIN")
    @reports_user_errors
    async def update_account(
        self, info: strawberry.Info[Context, Any], input: UpdateAccountInput
    ) -> UpdateAccountPayload:
        row = await accounts.update_account(
            actor=info.context.actor,
            name=input.name,
            timezone=input.timezone,
            week_start=input.week_start,
        )
        return UpdateAccountPayload(account=Account.from_model(row))
