"""Members: the Member type and createMember."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from models import Member as MemberRow
from schema.context import Context
from schema.enums import Role
from schema.errors import UserError, reports_user_errors
from schema.ids import to_id
from schema.pagination import DateRangeInput
from schema.permissions import IsAdmin
from schema.usage import Granularity, UsageReport, days_of
from services import members, usage

if TYPE_CHECKING:
    from schema.inboxes import Inbox


@strawberry.type
class Member:
    id: strawberry.ID
    name: str
    email: str
    role: Role
    key: strawberry.Private[int]
    account_key: strawberry.Private[int]

    @classmethod
    def from_model(cls, row: MemberRow) -> Member:
        return cls(
            id=to_id(row.id),
            name=row.name,
            email=row.email,
            role=row.role,
            key=row.id,
            account_key=row.account_id,
        )

    @strawberry.field
    async def personal_inbox(
        self, info: strawberry.Info[Context, Any]
    ) -> Annotated[Inbox, strawberry.lazy("schema.inboxes")] | None:
        from schema.inboxes import Inbox

        row = await info.context.loaders.personal_inbox.load(self.key)
        return None if row is None else Inbox.from_model(row)

    @strawberry.field(description="The member itself or an ADMIN.")
    async def usage(
        self,
        info: strawberry.Info[Context, Any],
        range: DateRangeInput | None = None,
        granularity: Granularity = Granularity.DAY,
    ) -> UsageReport:
        report = await usage.member_usage(
            actor=info.context.actor,
            member_id=self.key,
            days=days_of(range),
            granularity=granularity,
            clock=info.context.clock,
            budget=info.context.usage_budget,
        )
        return UsageReport.from_result(report)


@strawberry.input
class CreateMemberInput:
    name: str
    email: str
    role: Role = Role.MEMBER
    personal_phone_number: str | None = strawberry.field(
        default=None, description="Gives the member a personal inbox with this number."
    )


@strawberry.type
class CreateMemberPayload:
    member: Member | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class MemberMutation:
    @strawberry.mutation(description="ADMIN", permission_classes=[IsAdmin])
    @reports_user_errors
    async def create_member(
        self, info: strawberry.Info[Context, Any], input: CreateMemberInput
    ) -> CreateMemberPayload:
        row = await members.create_member(
            actor=info.context.actor,
            name=input.name,
            email=input.email,
            role=input.role,
            personal_phone_number=input.personal_phone_number,
            region=info.context.settings.default_region,
            clock=info.context.clock,
        )
        return CreateMemberPayload(member=Member.from_model(row))
