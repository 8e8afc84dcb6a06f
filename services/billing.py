"""What an account has, what things cost, and what this subscription month took and bought.

Figures of a month are the ledger entries with that `period_index`, summed in SQL:
credits used are the credits taken by outbound and inbound messages, net of the
refunds written in that month; credits bought are PURCHASE and AUTO_RECHARGE
entries, and their `amount_cents` is what was spent.
"""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.functions import Sum

from models import Account, LedgerEntry
from models.enums import LedgerEntryKind
from services import ledger
from services.auto_recharge import AutoRechargeState, auto_recharge_state
from services.balance import Balance
from services.errors import InvalidValue
from services.runtime import Runtime
from services.segments import SegmentCount, count_segments

# Well above the 1,600 characters a message may have, so the text box can still show
# how far over a draft is, but bounded: counting is linear work done on every keystroke.
MAX_ESTIMATE_CHARACTERS = 10_000

USAGE_KINDS = (
    LedgerEntryKind.OUTBOUND_MESSAGE,
    LedgerEntryKind.INBOUND_MESSAGE,
    LedgerEntryKind.REFUND,
)
PURCHASE_KINDS = (LedgerEntryKind.PURCHASE, LedgerEntryKind.AUTO_RECHARGE)


@dataclass(frozen=True, slots=True)
class PeriodFigures:
    """One subscription month, in credits and cents."""

    credits_used: int
    credits_purchased: int
    spent_cents: int


@dataclass(frozen=True, slots=True)
class Overview:
    balance: Balance
    account: Account
    auto_recharge: AutoRechargeState
    figures: PeriodFigures


def estimate(body: str) -> SegmentCount:
    """What sending `body` would cost (segments, credits); InvalidValue above 10,000 characters."""
    if len(body) > MAX_ESTIMATE_CHARACTERS:
        raise InvalidValue(
            f"Estimates are for at most {MAX_ESTIMATE_CHARACTERS:,} characters, not {len(body):,}.",
            field="body",
        )
    return count_segments(body)


async def current_balance(*, runtime: Runtime, account_id: int) -> Balance:
    """The balance in credits now, after applying (and announcing) a due monthly allotment.

    A new month applied here is a committed change like a send: when it leaves the
    total below the auto-recharge threshold, it triggers the recharge.
    """
    return (await ledger.balance_now(runtime, account_id)).balance


async def period_figures(*, account_id: int, period_index: int) -> PeriodFigures:
    """Credits used and bought, and cents spent, in one subscription month."""
    sums = (
        await LedgerEntry.filter(
            account_id=account_id,
            period_index=period_index,
            kind__in=[*USAGE_KINDS, *PURCHASE_KINDS],
        )
        .annotate(credit_sum=Sum("credits"), cent_sum=Sum("amount_cents"))
        .group_by("kind")
        .values("kind", "credit_sum", "cent_sum")
    )
    # At most one row per kind: a handful of aggregates, not the ledger's rows.
    by_kind = {
        row["kind"]: (int(row["credit_sum"] or 0), int(row["cent_sum"] or 0)) for row in sums
    }
    return PeriodFigures(
        credits_used=-sum(by_kind.get(kind, (0, 0))[0] for kind in USAGE_KINDS),
        credits_purchased=sum(by_kind.get(kind, (0, 0))[0] for kind in PURCHASE_KINDS),
        spent_cents=sum(by_kind.get(kind, (0, 0))[1] for kind in PURCHASE_KINDS),
    )


async def billing_overview(*, runtime: Runtime, account_id: int) -> Overview:
    """The balance, auto-recharge state and figures of the current subscription month."""
    balance = await current_balance(runtime=runtime, account_id=account_id)
    account = await Account.get(id=account_id)
    return Overview(
        balance=balance,
        account=account,
        auto_recharge=await auto_recharge_state(account, clock=runtime.clock),
        figures=await period_figures(account_id=account_id, period_index=account.period_index),
    )
