"""The account: Query.viewer, Query.account, the Account type and updateAccount."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from models import Account as AccountRow
from models.enums import AuditAction
from schema.audit import AUDIT_CURSORS, AuditEntryConnection
from schema.context import Context
from schema.credits import (
    LEDGER_CURSORS,
    AutoRecharge,
    BillingOverview,
    CreditBalance,
    LedgerEntryConnection,
    PaymentMethod,
    Plan,
)
from schema.enums import Direction, LedgerEntryKind, NoticeKind, WeekStart
from schema.errors import UserError, reports_user_errors
from schema.forecast import CreditForecast
from schema.ids import to_id, to_key
from schema.inboxes import Inbox
from schema.members import Member
from schema.messages import MessageConnection, message_position
from schema.notices import NOTICE_CURSORS, BalanceAlert, NoticeConnection
from schema.pagination import DateRangeInput, page_size, utc_range
from schema.permissions import IsAdmin
from schema.usage import Granularity, UsageGroupBy, UsageReport, days_of
from schema.webhook_endpoints import WebhookEndpoint
from services import (
    accounts,
    alerts,
    auto_recharge,
    billing,
    forecast,
    history,
    inboxes,
    members,
    notices,
    payments,
    usage,
    webhook_endpoints,
)


@strawberry.type
class Account:
    id: strawberry.ID
    name: str
    timezone: str = strawberry.field(description="IANA zone, e.g. America/New_York.")
    week_start: WeekStart
    created_at: datetime
    plan: Plan
    row: strawberry.Private[AccountRow]

    @classmethod
    def from_model(cls, row: AccountRow) -> Account:
        return cls(
            id=to_id(row.id),
            name=row.name,
            timezone=row.timezone,
            week_start=row.week_start,
            created_at=row.created_at,
            plan=Plan.from_model(row),
            row=row,
        )

    @strawberry.field
    async def balance(self, info: strawberry.Info[Context, Any]) -> CreditBalance:
        runtime = info.context.runtime
        balance = await billing.current_balance(
            account_id=self.row.id,
            runtime=runtime,
        )
        return CreditBalance.from_result(balance)

    @strawberry.field(description="ADMIN", permission_classes=[IsAdmin])
    async def auto_recharge(self, info: strawberry.Info[Context, Any]) -> AutoRecharge:
        state = await auto_recharge.auto_recharge_state(self.row, clock=info.context.clock)
        return AutoRecharge.from_result(state)

    @strawberry.field(description="ADMIN", permission_classes=[IsAdmin])
    def payment_method(self) -> PaymentMethod | None:
        return PaymentMethod.from_result(payments.saved_method(self.row))

    @strawberry.field
    async def members(self) -> list[Member]:
        return [Member.from_model(row) for row in await members.list_members(self.row.id)]

    @strawberry.field(description="A MEMBER sees the inboxes it may send from.")
    async def inboxes(self, info: strawberry.Info[Context, Any]) -> list[Inbox]:
        return [Inbox.from_model(row) for row in await inboxes.visible_inboxes(info.context.actor)]

    @strawberry.field(
        description=(
            "ADMIN. Without range: all time, from the first day with usage (or today) to today."
        ),
        permission_classes=[IsAdmin],
    )
    async def usage(
        self,
        info: strawberry.Info[Context, Any],
        range: DateRangeInput | None = None,
        granularity: Granularity = Granularity.DAY,
        group_by: UsageGroupBy = UsageGroupBy.NONE,
    ) -> UsageReport:
        report = await usage.account_usage(
            actor=info.context.actor,
            days=days_of(range),
            granularity=granularity,
            group_by=group_by,
            clock=info.context.clock,
            account=self.row,
            budget=info.context.usage_budget,
        )
        return UsageReport.from_result(report)

    @strawberry.field(description="ADMIN. Newest first.", permission_classes=[IsAdmin])
    async def ledger(
        self,
        info: strawberry.Info[Context, Any],
        first: int | None = 50,
        after: str | None = None,
        range: DateRangeInput | None = None,
        kinds: list[LedgerEntryKind] | None = None,
    ) -> LedgerEntryConnection:
        secret = info.context.settings.secret_key
        page = await history.ledger_page(
            account_id=self.row.id,
            first=page_size(first, default=50),
            after=LEDGER_CURSORS.decode_id(after, secret=secret),
            span=utc_range(range, self.timezone),
            kinds=kinds,
        )
        return LedgerEntryConnection.from_result(page, secret=secret)

    @strawberry.field(description="Newest first. A MEMBER sees messages of the inboxes it may use.")
    async def messages(
        self,
        info: strawberry.Info[Context, Any],
        first: int | None = 50,
        after: str | None = None,
        range: DateRangeInput | None = None,
        inbox_id: strawberry.ID | None = None,
        direction: Direction | None = None,
    ) -> MessageConnection:
        secret = info.context.settings.secret_key
        page = await history.message_page(
            actor=info.context.actor,
            first=page_size(first, default=50),
            after=message_position(after, secret=secret),
            span=utc_range(range, self.timezone),
            inbox_id=None if inbox_id is None else to_key(inbox_id, field="inbox_id"),
            direction=direction,
        )
        return MessageConnection.from_result(page, secret=secret)

    @strawberry.field(
        description="ADMIN. When the credits run out at the recent pace.",
        permission_classes=[IsAdmin],
    )
    async def forecast(self, info: strawberry.Info[Context, Any]) -> CreditForecast:
        result = await forecast.account_forecast(
            runtime=info.context.runtime, actor=info.context.actor, account=self.row
        )
        return CreditForecast.from_result(result)

    @strawberry.field(
        description="ADMIN. Newest first: every change of the account's settings, by whom.",
        permission_classes=[IsAdmin],
    )
    async def audit_log(
        self,
        info: strawberry.Info[Context, Any],
        first: int | None = 50,
        after: str | None = None,
        range: DateRangeInput | None = None,
        actions: list[AuditAction] | None = None,
    ) -> AuditEntryConnection:
        secret = info.context.settings.secret_key
        page = await history.audit_page(
            account_id=self.row.id,
            first=page_size(first, default=50),
            after=AUDIT_CURSORS.decode_id(after, secret=secret),
            span=utc_range(range, self.timezone),
            actions=actions,
        )
        return AuditEntryConnection.from_result(page, secret=secret)

    @strawberry.field(description="ADMIN", permission_classes=[IsAdmin])
    async def billing_overview(self, info: strawberry.Info[Context, Any]) -> BillingOverview:
        runtime = info.context.runtime
        overview = await billing.billing_overview(
            account_id=self.row.id,
            runtime=runtime,
        )
        return BillingOverview.from_result(overview)

    @strawberry.field(description="ADMIN. Lowest threshold first.", permission_classes=[IsAdmin])
    async def balance_alerts(self) -> list[BalanceAlert]:
        return [
            BalanceAlert.from_model(row) for row in await alerts.list_alerts(account_id=self.row.id)
        ]

    @strawberry.field(
        description="ADMIN. Newest first: what alerts and budgets noticed.",
        permission_classes=[IsAdmin],
    )
    async def notices(
        self,
        info: strawberry.Info[Context, Any],
        first: int | None = 50,
        after: str | None = None,
        kinds: list[NoticeKind] | None = None,
    ) -> NoticeConnection:
        secret = info.context.settings.secret_key
        page = await notices.notice_page(
            account_id=self.row.id,
            first=page_size(first, default=50),
            after=NOTICE_CURSORS.decode_id(after, secret=secret),
            kinds=kinds,
        )
        return NoticeConnection.from_result(page, secret=secret)

    @strawberry.field(description="ADMIN. Oldest first.", permission_classes=[IsAdmin])
    async def webhook_endpoints(self) -> list[WebhookEndpoint]:
        rows = await webhook_endpoints.list_endpoints(account_id=self.row.id)
        return [WebhookEndpoint.from_model(row) for row in rows]


@strawberry.type
class AccountQuery:
    @strawberry.field(description="The member that owns the token.")
    async def viewer(self, info: strawberry.Info[Context, Any]) -> Member:
        actor = info.context.actor
        row = await members.get_member(account_id=actor.account_id, member_id=actor.member_id)
        return Member.from_model(row)

    @strawberry.field(description="The viewer's account.")
    async def account(self, info: strawberry.Info[Context, Any]) -> Account:
        return Account.from_model(await info.context.account())


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
    @strawberry.mutation(description="ADMIN", permission_classes=[IsAdmin])
    @reports_user_errors
    async def update_account(
        self, info: strawberry.Info[Context, Any], input: UpdateAccountInput
    ) -> UpdateAccountPayload:
        row = await accounts.update_account(
            actor=info.context.actor,
            name=input.name,
            timezone=input.timezone,
            week_start=input.week_start,
            clock=info.context.clock,
        )
        return UpdateAccountPayload(account=Account.from_model(row))
