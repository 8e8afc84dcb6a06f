"""The usage cost limit over HTTP and websockets (README "Limits": usage reports and buckets).

Lists (`Account.members`, `Account.inboxes`) hold any number of items, and each can ask
for its `usage`: a request may read at most 50 usage reports and 20,000 buckets (a
report's series times its buckets) by default. Past that the request is refused with
QUERY_TOO_COMPLEX, whole, before the reports over the limit read anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from models import Member
from models.enums import Role
from services.access import Principal
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.members import create_member
from services.runtime import Runtime
from tests.api.test_subscriptions import (
    Live,
    receive,
    serving,
    subscribe,
    transport_ws,
)
from tests.conftest import Api
from tests.services.conftest import open_inbox

pytestmark = pytest.mark.usefixtures("db")

# Today is 2026-01-15 (tests/conftest.py START): the last two years, 731 days.
TWO_YEARS = {"start": "2024-01-15", "end": "2026-01-14"}
MEMBERS_USAGE = "{ account { members { id usage(granularity: ALL) { totals { messages } } } } }"
SCREEN = """query($range: DateRangeInput!) { account {
  totals: usage(range: $range) { series { start figures { messages segments } } }
  byMember: usage(range: $range, groupBy: MEMBER) {
    groups { member { id name } totals { messages } series { start figures { messages } } } }
} }"""
CREATE_MEMBER = """mutation { createMember(input: {name: "Dee", email: "dee@acme.example"}) {
  member { id usage { totals { messages } } } userErrors { code } } }"""
ONE_REPORT = "{ account { usage(granularity: ALL) { totals { messages } } } }"
TWO_REPORTS = (
    "{ account { a: usage(granularity: ALL) { start } b: usage(granularity: ALL) { start } } }"
)
EVENT_USAGE = """subscription { balanceChanged { balance { total } entries { kind message {
  inbox { usage(granularity: ALL) { totals { messages } } }
  sender { usage(granularity: ALL) { totals { messages } } } } } } }"""


def daily_aliases(count: int) -> str:
    """`count` aliased two-year daily reports of the account: 731 buckets each."""
    fields = " ".join(
        f'r{i}: usage(range: {{start: "{TWO_YEARS["start"]}", end: "{TWO_YEARS["end"]}"}}) '
        "{ start }"
        for i in range(count)
    )
    return "{ account { " + fields + " } }"


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    """The one error of a refused request; its data is null."""
    assert body["data"] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", error
    assert "path" not in error or error["path"] is None, error
    result: dict[str, Any] = error
    return result


async def add_members(admin: Principal, clock: FrozenClock, count: int) -> list[Member]:
    return [
        await create_member(
            actor=admin,
            name=f"Member {i}",
            email=f"m{i}@acme.example",
            role=Role.MEMBER,
            personal_phone_number=None,
            region="US",
            clock=clock,
        )
        for i in range(count)
    ]


@pytest.fixture
def tight(settings: Settings) -> Settings:
    """Settings with room for one usage report a request."""
    return replace(settings, max_usage_reports=1)


@pytest.fixture
async def tight_api(tight: Settings, runtime: Runtime) -> AsyncIterator[Api]:
    app = create_app(tight, runtime=runtime, manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
        yield Api(http)


# --- over HTTP --------------------------------------------------------------------------


async def test_two_hundred_members_each_asking_for_usage_are_refused(
    api: Api, account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    # given
    await add_members(admin, clock, 200)
    # when
    body = await api(MEMBERS_USAGE, token=account.token.secret)
    # then: one error for the request, saying what to ask for instead
    error = refusal(body)
    assert error["extensions"] == {
        "code": "QUERY_TOO_COMPLEX",
        "limit": "usageReports",
        "maximum": 50,
    }
    assert "more than 50 usage reports" in error["message"]
    assert "groupBy MEMBER" in error["message"]


async def test_an_analytics_screen_of_twenty_members_over_two_years_by_day_passes(
    api: Api, account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    # given twenty members besides the admin
    await add_members(admin, clock, 20)
    # when: the totals and the member groups, 731 days each (16,813 buckets)
    body = await api(SCREEN, {"range": TWO_YEARS}, token=account.token.secret)
    # then
    assert "errors" not in body, body["errors"]
    usage = body["data"]["account"]
    assert len(usage["totals"]["series"]) == 731
    assert len(usage["byMember"]["groups"]) == 21
    assert all(len(group["series"]) == 731 for group in usage["byMember"]["groups"])


async def test_aliases_of_usage_each_count_toward_the_buckets(
    api: Api, account: NewAccount
) -> None:
    token = account.token.secret

    # when: 27 and 28 two-year daily reports (19,737 and 20,468 buckets)
    within = await api(daily_aliases(27), token=token)
    beyond = await api(daily_aliases(28), token=token)

    # then
    assert "errors" not in within, within["errors"]
    error = refusal(beyond)
    assert error["extensions"] == {
        "code": "QUERY_TOO_COMPLEX",
        "limit": "usageBuckets",
        "maximum": 20_000,
    }
    assert "Narrow the range, use a coarser granularity" in error["message"]


async def test_the_budget_is_per_request(api: Api, account: NewAccount) -> None:
    token = account.token.secret

    # when two requests in a row take nearly the whole budget each
    first = await api(daily_aliases(27), token=token)
    second = await api(daily_aliases(27), token=token)

    # then both run
    assert "errors" not in first, first["errors"]
    assert "errors" not in second, second["errors"]


async def test_a_mutation_keeps_its_payload_when_usage_in_it_is_refused(
    tight_api: Api, account: NewAccount
) -> None:
    # given room for one report, and a createMember payload asking for the new member's
    # usage twice
    mutation = CREATE_MEMBER.replace(
        "usage { totals { messages } }",
        "usage { totals { messages } } again: usage { totals { messages } }",
    )
    # when
    body = await tight_api(mutation, token=account.token.secret)
    # then: the member was created; only the report past the budget is refused, in place
    assert body["data"]["createMember"] == {"member": None, "userErrors": []}
    [error] = body["errors"]
    assert error["extensions"] == {
        "code": "QUERY_TOO_COMPLEX",
        "limit": "usageReports",
        "maximum": 1,
    }
    assert error["path"][:2] == ["createMember", "member"]
    assert await Member.exists(email="dee@acme.example")


def test_the_usage_limits_are_read_from_the_environment() -> None:
    env = {"TALLY_MAX_USAGE_REPORTS": "10", "TALLY_MAX_USAGE_BUCKETS": "5000"}

    settings = Settings.from_env(env)

    assert (settings.max_usage_reports, settings.max_usage_buckets) == (10, 5000)
    assert (Settings.from_env({}).max_usage_reports, Settings().max_usage_buckets) == (50, 20_000)


# --- over websockets --------------------------------------------------------------------


@pytest.fixture
async def live(tight: Settings, runtime: Runtime) -> AsyncIterator[Live]:
    async with serving(tight, runtime) as server:
        yield server


async def result_of(ws: Any, op: str) -> dict[str, Any]:
    """The one result of a query sent over graphql-transport-ws, then its completion."""
    message = await receive(ws)
    assert (message["type"], message["id"]) == ("next", op), message
    assert await receive(ws) == {"type": "complete", "id": op}
    payload: dict[str, Any] = message["payload"]
    return payload


async def test_a_websocket_query_over_the_budget_is_refused_and_the_next_one_runs(
    live: Live, account: NewAccount
) -> None:
    async with transport_ws(live.ws_url, account.token.secret) as ws:
        # when
        await subscribe(ws, TWO_REPORTS, op="a")
        refused = await result_of(ws, "a")
        await subscribe(ws, ONE_REPORT, op="b")
        answered = await result_of(ws, "b")

    # then
    assert refusal(refused)["extensions"]["limit"] == "usageReports"
    assert answered == {"data": {"account": {"usage": {"totals": {"messages": 0}}}}}


async def test_operations_running_at_once_on_one_websocket_have_budgets_of_their_own(
    live: Live, account: NewAccount
) -> None:
    async with transport_ws(live.ws_url, account.token.secret) as ws:
        # when: two operations, sent before either answers
        await subscribe(ws, ONE_REPORT, op="a")
        await subscribe(ws, ONE_REPORT, op="b")
        messages = [await receive(ws) for _ in range(4)]

    # then
    results = {m["id"]: m["payload"] for m in messages if m["type"] == "next"}
    assert results == {
        op: {"data": {"account": {"usage": {"totals": {"messages": 0}}}}} for op in "ab"
    }


async def test_each_subscription_event_has_a_budget_of_its_own(
    settings: Settings, runtime: Runtime, account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    # given room for two reports: an event's entry asks for its inbox's and sender's usage
    inbox = await open_inbox(admin, clock)
    token = account.token.secret
    async with (
        serving(replace(settings, max_usage_reports=2), runtime) as live,
        transport_ws(live.ws_url, token) as ws,
    ):
        await subscribe(ws, EVENT_USAGE)
        await receive(ws)  # the balance now, with no entries
        # when: two sends, two events
        events = []
        for _ in range(2):
            await live.send(token, inbox.id)
            events.append(await receive(ws))

    # then: both events are answered
    for event in events:
        assert "errors" not in event["payload"], event
        [entry] = event["payload"]["data"]["balanceChanged"]["entries"]
        assert entry["message"]["inbox"]["usage"]["totals"]["messages"] >= 1


async def test_a_subscription_event_over_the_budget_is_refused_and_the_stream_goes_on(
    live: Live, account: NewAccount, admin: Principal, clock: FrozenClock
) -> None:
    # given room for one report, and events asking for two
    inbox = await open_inbox(admin, clock)
    token = account.token.secret
    async with transport_ws(live.ws_url, token) as ws:
        await subscribe(ws, EVENT_USAGE)
        first = await receive(ws)
        # when
        await live.send(token, inbox.id)
        refused = await receive(ws)
        await live.send(token, inbox.id)
        after = await receive(ws)
        # then
        assert first["payload"]["data"]["balanceChanged"]["entries"] == []
        for event in (refused, after):
            assert (event["type"], event["id"]) == ("next", "1"), event
            assert refusal(event["payload"])["extensions"]["limit"] == "usageReports"
