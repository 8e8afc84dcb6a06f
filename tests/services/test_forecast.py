"""The run-out forecast against a brute force: RULES.md "Forecast", simulated day by day.

Hypothesis draws a zone (DST ones included), a plan, the account's creation instant (so
subscription months start anywhere in the measured window) and a history of received and
sent messages, some refunded, some beyond the balance (purchased credits go negative).
The test keeps its own record of what counts, finds the window, the pace and the period
starts itself, spends the pace day by day, and compares with the service.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from models import Account
from services.accounts import PlanTerms, create_account
from services.broadcast import LocalBroker
from services.carrier import SimulatedCarrier
from services.clock import FrozenClock
from services.errors import InsufficientCredits
from services.forecast import Forecast, ForecastStatus, Projection, account_forecast, project
from services.payments import SimulatedPaymentProvider
from services.runtime import Runtime
from tests.conftest import _empty_tables
from tests.services.conftest import body_of, open_inbox, principal, receive, report, send

NOW = datetime(2026, 3, 20, 15, 30, tzinfo=UTC)
ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "America/Santiago",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "UTC",
]


@dataclass
class History:
    zone: str
    monthly_credits: int
    # How long before NOW the account was created.
    age: timedelta
    # (seconds after creation, kind, segments): kind is receive, send or refunded.
    messages: list[tuple[int, str, int]]
    counted: list[tuple[datetime, int]] = field(default_factory=list)


@st.composite
def histories(draw: st.DrawFn) -> History:
    age = timedelta(days=draw(st.integers(0, 90)), seconds=draw(st.integers(0, 86_399)))
    seconds = int(age.total_seconds())
    # Mostly within the last 40 days, where the window is.
    recent = max(0, seconds - 40 * 86_400)
    when = st.one_of(
        st.integers(recent, max(recent, seconds - 1)), st.integers(0, max(0, seconds - 1))
    )
    kinds = st.sampled_from(["receive", "receive", "send", "refunded"])
    messages = draw(st.lists(st.tuples(when, kinds, st.integers(1, 4)), max_size=25))
    return History(
        zone=draw(st.sampled_from(ZONES)),
        monthly_credits=draw(st.sampled_from([0, 3, 10, 40, 200, 1000])),
        age=age,
        messages=sorted(messages),
    )


def every_day(n: int, kind: str = "receive", segments: int = 2) -> list[tuple[int, str, int]]:
    """A message a day for the last ``n`` days of a 90-day-old account."""
    return [((90 - n + i) * 86_400 + 3600, kind, segments) for i in range(n)]


AGE = timedelta(days=90)


async def make_history(history: History, database: str) -> Forecast:
    """The history through the services, then the forecast at NOW."""
    await _empty_tables(database)
    history.counted = []
    clock = FrozenClock(NOW - history.age)
    runtime = Runtime(
        clock=clock,
        carrier=SimulatedCarrier(),
        payments=SimulatedPaymentProvider(),
        broker=LocalBroker(),
    )
    new = await create_account(
        name="Forecast",
        admin_name="Ada",
        admin_email="ada@forecast.example",
        timezone=history.zone,
        plan=PlanTerms(monthly_credits=history.monthly_credits),
        clock=clock,
    )
    actor = principal(new)
    inbox = await open_inbox(actor, clock)
    for offset, kind, segments in history.messages:
        clock.set(new.account.created_at + timedelta(seconds=offset))
        if kind == "receive":
            await receive(runtime, inbox, body_of(segments))
            history.counted.append((clock.now(), segments))
            continue
        try:
            sent = await send(runtime, actor, inbox, body_of(segments))
        except InsufficientCredits:
            continue
        if kind == "refunded":
            await report(runtime, sent.message, delivered=False)
        else:
            history.counted.append((clock.now(), segments))
    clock.set(NOW)
    account = await Account.get(id=actor.account_id)
    result = await account_forecast(runtime=runtime, actor=actor, account=account)
    return result


# The brute force: nothing below calls the service's helpers.


def add_months(anchor: datetime, months: int) -> datetime:
    year, month = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + year, month + 1
    return anchor.replace(
        year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1])
    )


def expected(history: History, anchor: datetime, balance: Account) -> dict[str, Any]:
    zone = ZoneInfo(history.zone)
    today = NOW.astimezone(zone).date()
    days = [at.astimezone(zone).date() for at, _ in history.counted]
    first = min(days, default=None)
    window = [today - timedelta(days=n) for n in range(28, 0, -1)]
    if first is not None:
        window = [day for day in window if day >= first]
    based_on = 0 if first is None else len(window)
    subscription = balance.subscription_credits
    if based_on < 7:
        return {"status": ForecastStatus.INSUFFICIENT_HISTORY, "based_on": based_on,
                "burn": None, "run_out": None, "expiring": subscription}  # fmt: skip
    used = sum(s for (at, s), day in zip(history.counted, days, strict=True) if day in window)
    burn = Fraction(used, based_on)
    starts = [add_months(anchor, n) for n in range(1, 30)]
    later = [start for start in starts if start > NOW]
    renewals = {start.astimezone(zone).date() for start in later}
    end_day = later[0].astimezone(zone).date()
    if burn == 0:
        return {"status": ForecastStatus.NO_USAGE, "based_on": based_on, "burn": burn,
                "run_out": None, "expiring": subscription}  # fmt: skip
    expiring = max(0, math.floor(subscription - burn * (end_day - today).days))
    run_out = day_by_day(
        today, subscription, balance.purchased_credits, history.monthly_credits, renewals, burn
    )
    status = ForecastStatus.NOT_WITHIN_HORIZON if run_out is None else ForecastStatus.OK
    return {"status": status, "based_on": based_on, "burn": burn, "run_out": run_out,
            "expiring": expiring}  # fmt: skip


def day_by_day(
    today: date, sub: int, purchased: int, monthly: int, renewals: set[date], burn: Fraction
) -> date | None:
    subscription, bought = Fraction(sub), Fraction(purchased)
    for n in range(366):
        day = today + timedelta(days=n)
        if day in renewals:
            subscription = Fraction(monthly)
        if subscription + bought < burn:
            return day
        taken = min(subscription, burn)
        subscription -= taken
        bought -= burn - taken
    return None


def got(result: Forecast) -> dict[str, Any]:
    return {"status": result.status, "based_on": result.based_on_days,
            "burn": result.daily_burn, "run_out": result.run_out_date,
            "expiring": result.subscription_credits_expiring}  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories())
# The cases the rules single out, always run besides the random ones:
@example(History("UTC", 1000, AGE, every_day(20)))  # the allotment covers it: NOT_WITHIN_HORIZON
@example(History("America/New_York", 10, AGE, every_day(28, segments=4)))  # runs out, negative
@example(History("Europe/London", 40, AGE, every_day(5)))  # under 7 days: INSUFFICIENT_HISTORY
@example(History("Asia/Kolkata", 40, AGE, every_day(2, "refunded")))  # no history at all
@example(History("UTC", 40, AGE, [(3600, "receive", 2)]))  # usage, but not in the window
@example(History("Australia/Sydney", 40, AGE, every_day(10, "refunded") + every_day(3)))
@example(History("America/Santiago", 3, timedelta(days=40, hours=5), every_day(12, segments=1)))
async def test_the_forecast_is_the_day_by_day_simulation(database: str, history: History) -> None:
    result = await make_history(history, database)
    event(result.status.value)
    row = await Account.get()
    assert got(result) == expected(history, row.created_at, row)


def test_a_negative_purchased_balance_runs_out_today() -> None:
    projection = Projection(
        today=date(2026, 3, 1), subscription=0, purchased=-5, monthly_credits=100, renewals=[]
    )
    assert project(projection, Fraction(1, 3)) == date(2026, 3, 1)


def test_the_renewal_day_is_refilled_before_its_spending() -> None:
    # given 2 credits left, 1 a day, and a renewal to 5 the day after tomorrow
    today = date(2026, 3, 1)
    renewal = today + timedelta(days=2)
    projection = Projection(today, 2, 0, 5, [renewal])
    # then today and tomorrow are covered, and the renewal's 5 last five more days
    assert project(projection, Fraction(1)) == today + timedelta(days=7)
