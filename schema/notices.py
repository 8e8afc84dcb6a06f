"""Balance alerts and notices: BalanceAlert, Notice, setBalanceAlerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from models import BalanceAlert as BalanceAlertRow
from models import Notice as NoticeRow
from schema.context import Context
from schema.enums import AlertState, NoticeKind
from schema.errors import UserError, reports_user_errors
from schema.ids import to_id
from schema.inboxes import Inbox
from schema.pagination import Connection, CursorCodec
from schema.permissions import IsAdmin
from services import alerts
from services.history import Page
from services.notices import RaisedNotice

NOTICE_CURSORS = CursorCodec("notice")


@strawberry.type
class BalanceAlert:
    id: strawberry.ID
    threshold_credits: int = strawberry.field(
        description=(
            "Fires when a committed change takes the total balance from at or above this "
            "to below it."
        )
    )
    state: AlertState
    last_fired_at: datetime | None

    @classmethod
    def from_model(cls, row: BalanceAlertRow) -> BalanceAlert:
        return cls(
            id=to_id(row.id),
            threshold_credits=row.threshold_credits,
            state=row.state,
            last_fired_at=row.last_fired_at,
        )


@strawberry.type
class Notice:
    id: strawberry.ID
    kind: NoticeKind
    threshold_credits: int | None = strawberry.field(
        description="The alert's threshold (BALANCE_* notices)."
    )
    value: int = strawberry.field(
        description=(
            "BALANCE_*: the total balance right after the change. BUDGET_*: the inbox's\n"
            "credits used this period right after the change. AUTO_RECHARGE_*: the total "
            "balance."
        )
    )
    created_at: datetime
    inbox_key: strawberry.Private[int | None]

    @classmethod
    def from_result(cls, notice: RaisedNotice) -> Notice:
        return cls(
            id=to_id(notice.id),
            kind=notice.kind,
            threshold_credits=notice.threshold_credits,
            value=notice.value,
            created_at=notice.created_at,
            inbox_key=notice.inbox_id,
        )

    @classmethod
    def from_model(cls, row: NoticeRow) -> Notice:
        return cls.from_result(RaisedNotice.from_model(row))

    @strawberry.field(description="The inbox whose budget it is (BUDGET_* notices).")
    async def inbox(self, info: strawberry.Info[Context, Any]) -> Inbox | None:
        if self.inbox_key is None:
            return None
        return Inbox.from_model(await info.context.loaders.inbox.load(self.inbox_key))


@strawberry.type
class NoticeConnection(Connection[Notice]):
    @classmethod
    def from_result(cls, page: Page[NoticeRow], *, secret: str) -> NoticeConnection:
        return cls.from_page(
            page,
            node=Notice.from_model,
            cursor=lambda row: NOTICE_CURSORS.encode([row.id], secret=secret),
        )


@strawberry.input
class SetBalanceAlertsInput:
    thresholds: list[int] = strawberry.field(
        description="At most 5 distinct thresholds, each 0 to 1,000,000; [] removes every alert."
    )


@strawberry.type
class SetBalanceAlertsPayload:
    alerts: list[BalanceAlert] | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AlertsMutation:
    @strawberry.mutation(
        description="ADMIN: replace the account's balance alert thresholds.",
        permission_classes=[IsAdmin],
    )
    @reports_user_errors
    async def set_balance_alerts(
        self, info: strawberry.Info[Context, Any], input: SetBalanceAlertsInput
    ) -> SetBalanceAlertsPayload:
        rows = await alerts.set_balance_alerts(
            actor=info.context.actor, thresholds=input.thresholds, clock=info.context.clock
        )
        return SetBalanceAlertsPayload(alerts=[BalanceAlert.from_model(row) for row in rows])
