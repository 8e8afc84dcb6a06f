"""Inbox budgets: monthly credit budgets per inbox, SOFT (notices) or HARD (and refusals).

Every message and refund moves its inbox's counter for its subscription month
(`inbox_period_usage`) by one upsert in the transaction that writes it, which also
returns the budget: a change that crosses nothing costs that one statement. A HARD
budget is checked under the account lock before the balance, so concurrent sends
of one account (and so of one inbox) are checked one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from models import Account, Inbox
from models.enums import AuditAction, BudgetMode, NoticeKind
from services.access import Principal, require_admin
from services.audit import audited
from services.clock import Clock
from services.errors import BudgetExceeded, Forbidden, InvalidValue, NotFound
from services.inboxes import may_send_from
from services.notices import NoticeDraft
from services.periods import period_at
from services.sql import connection, fetch, fetch_written, run

LARGEST_BUDGET = 1_000_000

_COUNT = (
    "INSERT INTO inbox_period_usage (inbox_id, period_index, credits, warned, reached)"
    " VALUES (?, ?, ?, FALSE, FALSE) ON CONFLICT (inbox_id, period_index)"
    " DO UPDATE SET credits = inbox_period_usage.credits + excluded.credits"
    " RETURNING credits, warned, reached,"
    " (SELECT budget_credits FROM inbox WHERE inbox.id = inbox_period_usage.inbox_id)"
    " AS budget_credits,"
    " (SELECT budget_mode FROM inbox WHERE inbox.id = inbox_period_usage.inbox_id) AS budget_mode"
)
_USED = (
    "SELECT i.budget_credits, i.budget_mode, COALESCE(u.credits, 0) FROM inbox i"
    " LEFT JOIN inbox_period_usage u ON u.inbox_id = i.id AND u.period_index = ?"
    " WHERE i.id = ?"
)
_MARK = (
    "UPDATE inbox_period_usage SET warned = ?, reached = ? WHERE inbox_id = ? AND period_index = ?"
)


@dataclass(frozen=True, slots=True)
class BudgetView:
    monthly_credits: int
    mode: BudgetMode
    used_this_period: int
    period_end: datetime

    @property
    def remaining(self) -> int:
        return self.monthly_credits - self.used_this_period


def crossed(budget: int, before: int, after: int) -> tuple[bool, bool]:
    """Whether going from `before` to `after` credits crosses 80% and 100% of `budget`."""
    warning = 5 * before < 4 * budget <= 5 * after
    reached = before < budget <= after
    return warning, reached


async def check_hard_budget(
    conn: BaseDBAsyncClient, *, inbox_id: int, period_index: int, credits: int
) -> None:
    """Raise BudgetExceeded when a send of `credits` would pass the inbox's HARD budget.

    Must run under the account lock, before anything of the send is written.
    """
    rows = await fetch(conn, _USED, [period_index, inbox_id])
    if not rows:
        return
    budget, mode, used = rows[0]
    if mode == BudgetMode.HARD.value and budget is not None and used + credits > budget:
        raise BudgetExceeded.for_send(budget=budget, used=int(used), required=credits)


async def count_usage(
    conn: BaseDBAsyncClient,
    *,
    inbox_id: int,
    period_index: int,
    credits: int,
    outbound_send: bool = False,
) -> list[NoticeDraft]:
    """Move the inbox's month by `credits` (negative for refunds); the notices it crossed.

    An outbound send that this takes past a HARD budget raises BudgetExceeded, which
    rolls its transaction back: a budget made HARD after the send's own check counts too.
    """
    rows = await fetch_written(conn, _COUNT, [inbox_id, period_index, credits])
    after, warned, reached, budget, mode = rows[0]
    if budget is None:
        return []
    if outbound_send and mode == BudgetMode.HARD.value and after > budget:
        raise BudgetExceeded.for_send(budget=budget, used=after - credits, required=credits)
    warning, full = crossed(budget, after - credits, after)
    warning, full = warning and not warned, full and not reached
    if not (warning or full):
        return []
    await run(conn, _MARK, [bool(warned) or warning, bool(reached) or full, inbox_id, period_index])
    drafts = []
    if warning:
        drafts.append(NoticeDraft(NoticeKind.BUDGET_WARNING, after, inbox_id=inbox_id))
    if full:
        drafts.append(NoticeDraft(NoticeKind.BUDGET_REACHED, after, inbox_id=inbox_id))
    return drafts


async def set_inbox_budget(
    *,
    actor: Principal,
    inbox_id: int,
    monthly_credits: int | None,
    mode: BudgetMode,
    clock: Clock,
) -> Inbox:
    """Set (credits per subscription month) or, with None, remove an inbox's budget."""
    require_admin(actor, "set inbox budgets")
    if monthly_credits is not None and not 1 <= monthly_credits <= LARGEST_BUDGET:
        raise InvalidValue(f"A budget is 1 to {LARGEST_BUDGET:,} credits.", field="monthly_credits")
    chosen = None if monthly_credits is None else mode
    async with audited(actor=actor, action=AuditAction.INBOX_BUDGET_SET, clock=clock) as entry:
        inbox = await Inbox.get_or_none(id=inbox_id, account_id=actor.account_id)
        if inbox is None:
            raise NotFound.unknown("inbox_id")
        await Inbox.filter(id=inbox.id).update(budget_credits=monthly_credits, budget_mode=chosen)
        entry.target_id = inbox.id
        entry.before = _budget_fields(inbox.budget_credits, inbox.budget_mode)
        entry.after = _budget_fields(monthly_credits, chosen)
    return await Inbox.get(id=inbox.id)


def _budget_fields(credits: int | None, mode: BudgetMode | None) -> dict[str, object] | None:
    """A budget as setInboxBudget's input spells it; None when there is none."""
    if credits is None or mode is None:
        return None
    return {"monthlyCredits": credits, "mode": mode.value}


async def inbox_budget(
    *, actor: Principal, account: Account, inbox: Inbox, clock: Clock
) -> BudgetView | None:
    """The inbox's budget and its use this subscription month; ADMIN or a member who may
    use it. `account` is the inbox's, as the caller has it already."""
    if not actor.is_admin and not await may_send_from(actor, inbox):
        raise Forbidden("Only an admin or a member who may use this inbox may see its budget.")
    if inbox.budget_credits is None or inbox.budget_mode is None:
        return None
    period = period_at(account.created_at, clock.now())
    used = await fetch(
        connection(),
        "SELECT credits FROM inbox_period_usage WHERE inbox_id = ? AND period_index = ?",
        [inbox.id, period.index],
    )
    return BudgetView(
        monthly_credits=inbox.budget_credits,
        mode=inbox.budget_mode,
        used_this_period=int(used[0][0]) if used else 0,
        period_end=period.end,
    )
