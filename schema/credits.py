"""Credits: plan, balance, ledger, payment method, auto-recharge, billing overview, and buying."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from models import Account as AccountRow
from models import LedgerEntry as LedgerEntryRow
from schema.context import Context
from schema.enums import CreditBucket, LedgerEntryKind
from schema.errors import UserError, reports_user_errors
from schema.ids import to_id
from schema.pagination import Connection, CursorCodec, page_size
from schema.permissions import IsAdmin
from services import auto_recharge, history, payments, purchases
from services.auto_recharge import AutoRechargeState
from services.balance import Balance
from services.billing import Overview
from services.history import Page
from services.payments import SavedMethod

if TYPE_CHECKING:
    from schema.messages import Message

LEDGER_CURSORS = CursorCodec("ledger")


@strawberry.type
class Plan:
    name: str
    monthly_credits: int = strawberry.field(
        description="Credits granted at the start of every subscription month; unused ones expire."
    )
    price_per_credit_cents: int
    currency: str

    @classmethod
    def from_model(cls, row: AccountRow) -> Plan:
        return cls(
            name=row.plan_name,
            monthly_credits=row.monthly_credits,
            price_per_credit_cents=row.price_per_credit_cents,
            currency=row.currency,
        )


@strawberry.type
class CreditBalance:
    total: int = strawberry.field(description="subscriptionCredits + purchasedCredits.")
    subscription_credits: int = strawberry.field(
        description="What is left of this month's allotment; gone at periodEnd."
    )
    purchased_credits: int = strawberry.field(
        description=(
            "Bought credits: never expire. Negative when inbound messages ran past the balance."
        )
    )
    period_start: datetime
    period_end: datetime

    @classmethod
    def from_result(cls, balance: Balance) -> CreditBalance:
        return cls(
            total=balance.total,
            subscription_credits=balance.subscription,
            purchased_credits=balance.purchased,
            period_start=balance.period_start,
            period_end=balance.period_end,
        )


@strawberry.type
class AutoRecharge:
    enabled: bool
    threshold_credits: int = strawberry.field(
        description="Recharge when the total balance falls below this."
    )
    recharge_credits: int = strawberry.field(description="Credits bought by each recharge.")
    max_recharges_per_period: int = strawberry.field(
        description="At most this many recharges per subscription month."
    )
    recharges_this_period: int
    last_failure: str | None = strawberry.field(
        description=(
            "Why the last recharge failed, or null; "
            "auto-recharge turns itself off after 3 failures in a row."
        )
    )

    @classmethod
    def from_result(cls, state: AutoRechargeState) -> AutoRecharge:
        return cls(
            enabled=state.enabled,
            threshold_credits=state.threshold_credits,
            recharge_credits=state.recharge_credits,
            max_recharges_per_period=state.max_recharges_per_period,
            recharges_this_period=state.recharges_this_period,
            last_failure=state.last_failure,
        )


@strawberry.type
class PaymentMethod:
    brand: str
    last4: str

    @classmethod
    def from_result(cls, method: SavedMethod | None) -> PaymentMethod | None:
        return None if method is None else cls(brand=method.brand, last4=method.last4)


@strawberry.type
class LedgerEntry:
    id: strawberry.ID
    kind: LedgerEntryKind
    bucket: CreditBucket
    credits: int = strawberry.field(
        description="Signed: positive adds credits, negative takes them."
    )
    balance_after: int = strawberry.field(description="The total balance right after this entry.")
    amount_cents: int | None = strawberry.field(
        description="What the account was charged, for PURCHASE and AUTO_RECHARGE."
    )
    created_at: datetime
    message_key: strawberry.Private[int | None]

    @classmethod
    def from_model(cls, row: LedgerEntryRow) -> LedgerEntry:
        return cls(
            id=to_id(row.id),
            kind=row.kind,
            bucket=row.bucket,
            credits=row.credits,
            balance_after=row.balance_after,
            amount_cents=row.amount_cents,
            created_at=row.created_at,
            message_key=row.message_id,
        )

    @strawberry.field
    async def message(
        self, info: strawberry.Info[Context, Any]
    ) -> Annotated[Message, strawberry.lazy("schema.messages")] | None:
        from schema.messages import Message

        if self.message_key is None:
            return None
        row = await info.context.loaders.message.load(self.message_key)
        return None if row is None else Message.from_model(row)


@strawberry.type
class LedgerEntryConnection(Connection[LedgerEntry]):
    @classmethod
    def from_result(cls, page: Page[LedgerEntryRow], *, secret: str) -> LedgerEntryConnection:
        return cls.from_page(
            page,
            node=LedgerEntry.from_model,
            cursor=lambda row: LEDGER_CURSORS.encode([row.id], secret=secret),
        )


@strawberry.type
class BillingOverview:
    balance: CreditBalance
    plan: Plan
    auto_recharge: AutoRecharge
    credits_used_this_period: int
    credits_purchased_this_period: int
    spent_this_period_cents: int
    account_key: strawberry.Private[int]

    @classmethod
    def from_result(cls, overview: Overview) -> BillingOverview:
        return cls(
            balance=CreditBalance.from_result(overview.balance),
            plan=Plan.from_model(overview.account),
            auto_recharge=AutoRecharge.from_result(overview.auto_recharge),
            credits_used_this_period=overview.figures.credits_used,
            credits_purchased_this_period=overview.figures.credits_purchased,
            spent_this_period_cents=overview.figures.spent_cents,
            account_key=overview.account.id,
        )

    @strawberry.field
    async def recent_entries(self, first: int | None = 10) -> list[LedgerEntry]:
        size = page_size(first, default=10)
        page = await history.ledger_page(account_id=self.account_key, first=size)
        return [LedgerEntry.from_model(row) for row in page.rows]


@strawberry.input
class BuyCreditsInput:
    credits: int
    idempotency_key: str


@strawberry.type
class BuyCreditsPayload:
    entry: LedgerEntry | None = None
    balance: CreditBalance | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SetPaymentMethodInput:
    token: str = strawberry.field(description="A token from the payment provider.")


@strawberry.type
class SetPaymentMethodPayload:
    payment_method: PaymentMethod | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class UpdateAutoRechargeInput:
    enabled: bool
    threshold_credits: int | None = None
    recharge_credits: int | None = None
    max_recharges_per_period: int | None = None


@strawberry.type
class UpdateAutoRechargePayload:
    auto_recharge: AutoRecharge | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CreditsMutation:
    @strawberry.mutation(description="ADMIN", permission_classes=[IsAdmin])
    @reports_user_errors
    async def buy_credits(
        self, info: strawberry.Info[Context, Any], input: BuyCreditsInput
    ) -> BuyCreditsPayload:
        runtime = info.context.runtime
        bought = await purchases.buy_credits(
            actor=info.context.actor,
            credits=input.credits,
            idempotency_key=input.idempotency_key,
            runtime=runtime,
        )
        return BuyCreditsPayload(
            entry=LedgerEntry.from_model(bought.entry),
            balance=CreditBalance.from_result(bought.balance),
        )

    @strawberry.mutation(description="ADMIN", permission_classes=[IsAdmin])
    @reports_user_errors
    async def set_payment_method(
        self, info: strawberry.Info[Context, Any], input: SetPaymentMethodInput
    ) -> SetPaymentMethodPayload:
        saved = await payments.set_payment_method(
            actor=info.context.actor,
            token=input.token,
            provider=info.context.runtime.payments,
            clock=info.context.clock,
        )
        return SetPaymentMethodPayload(payment_method=PaymentMethod.from_result(saved))

    @strawberry.mutation(
        description="ADMIN: turn auto-recharge on or off and set its rules.",
        permission_classes=[IsAdmin],
    )
    @reports_user_errors
    async def update_auto_recharge(
        self, info: strawberry.Info[Context, Any], input: UpdateAutoRechargeInput
    ) -> UpdateAutoRechargePayload:
        state = await auto_recharge.update_auto_recharge(
            actor=info.context.actor,
            enabled=input.enabled,
            threshold_credits=input.threshold_credits,
            recharge_credits=input.recharge_credits,
            max_recharges_per_period=input.max_recharges_per_period,
            clock=info.context.clock,
        )
        return UpdateAutoRechargePayload(auto_recharge=AutoRecharge.from_result(state))
