"""Inboxes: the Inbox type and createInbox."""

from __future__ import annotations

from typing import Any

import strawberry

from models import Inbox as InboxRow
from schema.budgets import Budget
from schema.context import Context
from schema.enums import BudgetMode, InboxKind
from schema.errors import UserError, reports_user_errors
from schema.ids import to_id, to_key
from schema.members import Member
from schema.pagination import DateRangeInput
from schema.permissions import IsAdmin
from schema.usage import Granularity, UsageReport, days_of
from services import budgets, inboxes, usage


@strawberry.type
class Inbox:
    id: strawberry.ID
    name: str
    phone_number: str = strawberry.field(description="E.164, e.g. +15551234567.")
    kind: InboxKind
    key: strawberry.Private[int]
    owner_key: strawberry.Private[int | None]
    row: strawberry.Private[InboxRow]

    @classmethod
    def from_model(cls, row: InboxRow) -> Inbox:
        return cls(
            id=to_id(row.id),
            name=row.name,
            phone_number=row.phone_number,
            kind=row.kind,
            key=row.id,
            owner_key=row.owner_id,
            row=row,
        )

    @strawberry.field(description="The owner of a PERSONAL inbox.")
    async def owner(self, info: strawberry.Info[Context, Any]) -> Member | None:
        if self.owner_key is None:
            return None
        row = await info.context.loaders.member.load(self.owner_key)
        return None if row is None else Member.from_model(row)

    @strawberry.field(description="Who may send from it.")
    async def members(self, info: strawberry.Info[Context, Any]) -> list[Member]:
        keys = await info.context.loaders.inbox_member_ids.load(self.key)
        rows = await info.context.loaders.member.load_many(keys)
        return [Member.from_model(row) for row in rows if row is not None]

    @strawberry.field(description="ADMIN", permission_classes=[IsAdmin])
    async def usage(
        self,
        info: strawberry.Info[Context, Any],
        range: DateRangeInput | None = None,
        granularity: Granularity = Granularity.DAY,
    ) -> UsageReport:
        report = await usage.inbox_usage(
            actor=info.context.actor,
            inbox_id=self.key,
            days=days_of(range),
            granularity=granularity,
            clock=info.context.clock,
            budget=info.context.usage_budget,
        )
        return UsageReport.from_result(report)

    @strawberry.field(
        description=(
            "The inbox's monthly credit budget, or null. ADMIN, or a member who may use the inbox."
        )
    )
    async def budget(self, info: strawberry.Info[Context, Any]) -> Budget | None:
        view = await budgets.inbox_budget(
            actor=info.context.actor,
            account=await info.context.account(),
            inbox=self.row,
            clock=info.context.clock,
        )
        return None if view is None else Budget.from_result(view)


@strawberry.input
class CreateInboxInput:
    name: str
    phone_number: str
    member_ids: list[strawberry.ID] = strawberry.field(
        default_factory=list, description="Members who may send from this shared inbox."
    )


@strawberry.type
class CreateInboxPayload:
    inbox: Inbox | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SetInboxBudgetInput:
    inbox_id: strawberry.ID
    monthly_credits: int | None = strawberry.field(
        description="1 to 1,000,000; null removes the budget."
    )
    mode: BudgetMode = BudgetMode.SOFT


@strawberry.type
class SetInboxBudgetPayload:
    inbox: Inbox | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class InboxMutation:
    @strawberry.mutation(description="ADMIN", permission_classes=[IsAdmin])
    @reports_user_errors
    async def create_inbox(
        self, info: strawberry.Info[Context, Any], input: CreateInboxInput
    ) -> CreateInboxPayload:
        row = await inboxes.create_shared_inbox(
            actor=info.context.actor,
            name=input.name,
            phone_number=input.phone_number,
            member_ids=[to_key(i, field="member_ids") for i in input.member_ids],
            region=info.context.settings.default_region,
            clock=info.context.clock,
        )
        return CreateInboxPayload(inbox=Inbox.from_model(row))

    @strawberry.mutation(
        description="ADMIN: set or remove an inbox's monthly credit budget.",
        permission_classes=[IsAdmin],
    )
    @reports_user_errors
    async def set_inbox_budget(
        self, info: strawberry.Info[Context, Any], input: SetInboxBudgetInput
    ) -> SetInboxBudgetPayload:
        row = await budgets.set_inbox_budget(
            actor=info.context.actor,
            inbox_id=to_key(input.inbox_id, field="inbox_id"),
            monthly_credits=input.monthly_credits,
            mode=input.mode,
            clock=info.context.clock,
        )
        return SetInboxBudgetPayload(inbox=Inbox.from_model(row))
