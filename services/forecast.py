"""The run-out forecast: when the credits run out at the recent pace (RULES.md "Forecast").

The pace is the usage rollups' segments over the last complete local days (never the
message table): one statement reads the account's first day with usage and the sum over
the window. The rest is pure: ``project`` walks the horizon period by period rather than
day by day, since between two renewals the total falls by the same amount every day; at
the local day that holds a period start the subscription credits become the monthly
allotment (what was left expires) before that day's spending.

The pace is a fraction of credits a day, kept exact (``Fraction``) so that a day whose
starting total equals the pace is never misjudged by a rounding error; the API shows it
as a Float.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from fractions import Fraction
from zoneinfo import ZoneInfo

from models import Account
from services.access import Principal, require_admin
from services.billing import current_balance
from services.calendar import local_day
from services.errors import NotFound
from services.periods import period_at, period_start
from services.rollups import account_pace
from services.runtime import Runtime

__all__ = ["Forecast", "ForecastStatus", "Projection", "account_forecast", "forecast_of", "project"]

WINDOW_DAYS = 28
MIN_DAYS = 7
# Today and the 365 days after it.
HORIZON_DAYS = 366


class ForecastStatus(Enum):
    OK = "OK"
    INSUFFICIENT_HISTORY = "INSUFFICIENT_HISTORY"
    NO_USAGE = "NO_USAGE"
    NOT_WITHIN_HORIZON = "NOT_WITHIN_HORIZON"


@dataclass(frozen=True, slots=True)
class Forecast:
    status: ForecastStatus
    # Credits a day; None for INSUFFICIENT_HISTORY.
    daily_burn: Fraction | None
    based_on_days: int
    run_out_date: date | None
    subscription_credits_expiring: int


@dataclass(frozen=True, slots=True)
class Projection:
    """What ``project`` needs: the balance now, and the local days that renew the allotment."""

    today: date
    subscription: int
    purchased: int
    monthly_credits: int
    # Local days holding the start of each later period, in order (the first holds periodEnd).
    renewals: Sequence[date]


def project(projection: Projection, burn: Fraction) -> date | None:
    """The first day from today whose starting total is less than ``burn`` (> 0), spending
    ``burn`` every day, subscription credits first; None within the horizon."""
    beyond = projection.today + timedelta(days=HORIZON_DAYS)
    day = projection.today
    subscription = Fraction(projection.subscription)
    purchased = Fraction(projection.purchased)
    for renewal in [*(r for r in projection.renewals if r < beyond), beyond]:
        # d days into this stretch the total starts the day at total - burn * d: the first
        # day it cannot cover is d = floor(total / burn) (at once when the total is negative).
        covered = max(0, math.floor((subscription + purchased) / burn))
        if day + timedelta(days=covered) < renewal:
            return day + timedelta(days=covered)
        spent = burn * (renewal - day).days
        purchased -= max(Fraction(0), spent - subscription)
        subscription = Fraction(projection.monthly_credits)
        day = renewal
    return None


def forecast_of(
    projection: Projection, *, segments: int, first_day: date | None, period_end_day: date
) -> Forecast:
    """The forecast from the window's segments and the first day with usage (pure)."""
    today = projection.today
    window_start = today - timedelta(days=WINDOW_DAYS)
    start = window_start if first_day is None else max(window_start, first_day)
    days = 0 if first_day is None else max(0, (today - start).days)
    left = projection.subscription
    if days < MIN_DAYS:
        return Forecast(ForecastStatus.INSUFFICIENT_HISTORY, None, days, None, left)
    burn = Fraction(segments, days)
    if burn == 0:
        return Forecast(ForecastStatus.NO_USAGE, burn, days, None, left)
    until_end = max(0, (period_end_day - today).days)
    expiring = max(0, math.floor(left - burn * until_end))
    run_out = project(projection, burn)
    status = ForecastStatus.NOT_WITHIN_HORIZON if run_out is None else ForecastStatus.OK
    return Forecast(status, burn, days, run_out, expiring)


async def account_forecast(*, runtime: Runtime, actor: Principal, account: Account) -> Forecast:
    """The actor's account's run-out forecast (ADMIN), in the account's local days.

    ``account``: the actor's account row as read by the request (its zone, plan, anchor).
    """
    require_admin(actor, "read the forecast")
    if account.id != actor.account_id:
        raise NotFound("No such account.")
    zone = ZoneInfo(account.timezone)
    # The balance as a read shows it: a due allotment is applied (and announced) first.
    balance = await current_balance(runtime=runtime, account_id=account.id)
    today = local_day(runtime.clock.now(), zone)
    window = (today - timedelta(days=WINDOW_DAYS), today - timedelta(days=1))
    first_day, segments = await account_pace(account.id, *window)
    projection = Projection(
        today=today,
        subscription=balance.subscription,
        purchased=balance.purchased,
        monthly_credits=account.monthly_credits,
        renewals=_renewal_days(account.created_at, balance.period_end, today, zone),
    )
    period_end_day = local_day(balance.period_end, zone)
    return forecast_of(
        projection, segments=segments, first_day=first_day, period_end_day=period_end_day
    )


def _renewal_days(
    anchor: datetime, period_end: datetime, today: date, zone: ZoneInfo
) -> list[date]:
    """The local days holding period starts from ``period_end`` on, within the horizon."""
    last = today + timedelta(days=HORIZON_DAYS - 1)
    index = period_at(anchor, period_end).index
    days = []
    while (day := local_day(period_start(anchor, index), zone)) <= last:
        days.append(day)
        index += 1
    return days
