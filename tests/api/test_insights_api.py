"""The forecast and the period-over-period comparison over HTTP, as the SPA asks for them."""

from __future__ import annotations

from datetime import timedelta

from models import Inbox
from models.enums import Role
from services.access import Principal
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.members import create_member
from services.runtime import Runtime
from services.tokens import add_token
from tests.conftest import Api
from tests.services.conftest import body_of, receive

FORECAST = """
{ account { forecast {
  status dailyBurn basedOnDays runOutDate subscriptionCreditsExpiring } } }
"""
COMPARISON = """
query ($range: DateRangeInput) {
  account { usage(range: $range, granularity: WEEK, groupBy: SHARED_INBOX) {
    totals { segments } previous { start end totals { segments messages } }
    groups { inbox { id } totals { segments } previousTotals { segments } }
  } }
}
"""


async def test_the_forecast_of_a_steady_pace(
    api: Api, account: NewAccount, inbox: Inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given 2 segments received on each of 10 days from 2026-01-16 (1,000 monthly credits)
    for _ in range(10):
        clock.advance(timedelta(days=1))
        await receive(runtime, inbox, body_of(2))
    # when an admin asks the next day (2026-01-26 in New York)
    clock.advance(timedelta(days=1))
    body = await api(FORECAST, token=account.token.secret)
    # then 2 a day over those 10 days; the allotment (renewed 2026-02-15) covers the pace,
    # and of the 980 left, 20 days of 2 are used before it expires
    assert body["data"]["account"]["forecast"] == {
        "status": "NOT_WITHIN_HORIZON",
        "dailyBurn": 2.0,
        "basedOnDays": 10,
        "runOutDate": None,
        "subscriptionCreditsExpiring": 980 - 2 * 20,
    }


async def test_the_comparison_is_the_range_before(
    api: Api, account: NewAccount, inbox: Inbox, runtime: Runtime, clock: FrozenClock
) -> None:
    # given one 3-segment message on 2026-01-16 (New York) and one on 2026-01-23
    for days in (1, 7, 3):
        clock.advance(timedelta(days=days))
        if days != 3:
            await receive(runtime, inbox, body_of(3))
    # when the week of the 19th is compared with the week before
    variables = {"range": {"start": "2026-01-19", "end": "2026-01-25"}}
    report = (await api(COMPARISON, variables, token=account.token.secret))["data"]["account"]
    usage = report["usage"]
    # then
    assert usage["previous"] == {
        "start": "2026-01-12",
        "end": "2026-01-18",
        "totals": {"segments": 3, "messages": 1},
    }
    assert usage["groups"] == [
        {
            "inbox": {"id": str(inbox.id)},
            "totals": {"segments": 3},
            "previousTotals": {"segments": 3},
        }
    ]


async def test_a_member_may_not_read_the_forecast_or_the_audit_log(
    api: Api, admin: Principal, clock: FrozenClock
) -> None:
    ben = await create_member(
        actor=admin, name="Ben", email="ben@acme.example", role=Role.MEMBER,
        personal_phone_number=None, region="US", clock=clock,
    )  # fmt: skip
    token = (await add_token(member=ben, name="t", now=clock.now())).secret
    for query in (FORECAST, "{ account { auditLog { nodes { action } } } }"):
        body = await api(query, token=token)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
