"""Inbox budgets: the Budget type (Inbox.budget and setInboxBudget live in schema/inboxes.py)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from schema.enums import BudgetMode
from services.budgets import BudgetView


@strawberry.type
class Budget:
    monthly_credits: int
    mode: BudgetMode
    used_this_period: int = strawberry.field(
        description=(
            "Credits of this inbox's messages (inbound and outbound) in the current "
            "subscription month, net of refunds."
        )
    )
    remaining: int = strawberry.field(
        description="monthlyCredits - usedThisPeriod; negative when inbound messages ran past it."
    )
    period_end: datetime

    @classmethod
    def from_result(cls, view: BudgetView) -> Budget:
        return cls(
            monthly_credits=view.monthly_credits,
            mode=view.mode,
            used_this_period=view.used_this_period,
            remaining=view.remaining,
            period_end=view.period_end,
        )
