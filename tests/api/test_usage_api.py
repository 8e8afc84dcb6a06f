"""Usage over HTTP: Account.usage, Member.usage and Inbox.usage, their errors and roles."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from models import Inbox, Member
from services.access import Principal
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.runtime import Runtime
from tests.api.test_accounts_api import UPDATE_ACCOUNT, member_token
from tests.api.test_messages_api import open_shared_inbox
from tests.conftest import Api
from tests.services.conftest import body_of, receive, send

FIGURES = "segments segmentsSent segmentsReceived messages messagesSent messagesReceived"
REPORT = f"""
start end granularity timezone totals {{ {FIGURES} }}
series {{ start end figures {{ {FIGURES} }} }}
groups {{ member {{ id name }} inbox {{ id phoneNumber }} totals {{ messages }}
          series {{ start figures {{ messages }} }} }}
"""
ACCOUNT_USAGE = f"""
query($range: DateRangeInput, $granularity: Granularity!, $groupBy: UsageGroupBy!) {{
  account {{ usage(range: $range, granularity: $granularity, groupBy: $groupBy) {{ {REPORT} }} }}
}}
"""
DEFAULTS = """
{ account { usage { start end granularity series { start } groups { totals { messages } } } } }
"""
VIEWER_USAGE = f"""
query($range: DateRangeInput) {{ viewer {{ id usage(range: $range) {{ {REPORT} }} }} }}
"""
MEMBERS_USAGE = """
{ account { members { id usage(granularity: ALL) { totals { messages } } } } }
"""
INBOX_USAGE = """
{ account { inboxes { id kind usage(granularity: MONTH) { totals { messages } } } } }
"""
NEW_YORK = ZoneInfo("America/New_York")
JANUARY = {"start": "2026-01-01", "end": "2026-01-31"}

pytestmark = pytest.mark.usefixtures("db")


def at(local: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=NEW_YORK)


def data(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]
    return result


async def account_usage(api: Api, token: str, **variables: Any) -> dict[str, Any]:
    variables.setdefault("granularity", "DAY")
    variables.setdefault("groupBy", "NONE")
    body = await api(ACCOUNT_USAGE, variables, token=token)
    usage: dict[str, Any] = data(body)["account"]["usage"]
    return usage


@pytest.fixture
async def traffic(
    api: Api, account: NewAccount, admin: Principal, clock: FrozenClock, runtime: Runtime
) -> tuple[str, Inbox, Inbox]:
    """Ben (a MEMBER with a personal inbox and a token) and a shared inbox, both with messages."""
    token = await member_token(api, account)
    shared = await open_shared_inbox(admin, clock)
    personal = await Inbox.get(kind="PERSONAL")
    clock.set(at("2026-01-05T09:00"))
    await send(runtime, admin, personal, body_of(2))
    await receive(runtime, shared)
    clock.set(at("2026-01-14T23:30"))
    await receive(runtime, personal)
    clock.set(at("2026-01-15T07:00"))
    return token, personal, shared


@pytest.mark.parametrize(
    ("granularity", "buckets"),
    [("DAY", 31), ("WEEK", 5), ("MONTH", 1), ("ALL", 1)],
)
@pytest.mark.parametrize("group_by", ["NONE", "MEMBER", "SHARED_INBOX"])
async def test_account_usage_in_every_granularity_and_grouping(
    api: Api,
    account: NewAccount,
    traffic: tuple[str, Inbox, Inbox],
    granularity: str,
    buckets: int,
    group_by: str,
) -> None:
    # when
    usage = await account_usage(
        api, account.token.secret, range=JANUARY, granularity=granularity, groupBy=group_by
    )
    # then
    assert (usage["start"], usage["end"], usage["granularity"]) == (
        "2026-01-01",
        "2026-01-31",
        granularity,
    )
    assert usage["timezone"] == "America/New_York"
    assert usage["totals"] == {
        "segments": 4,
        "segmentsSent": 2,
        "segmentsReceived": 2,
        "messages": 3,
        "messagesSent": 1,
        "messagesReceived": 2,
    }
    assert len(usage["series"]) == buckets
    assert sum(b["figures"]["messages"] for b in usage["series"]) == 3
    assert usage["series"][0]["start"] == "2026-01-01"
    assert usage["series"][-1]["end"] == "2026-01-31"
    groups = usage["groups"]
    if group_by == "NONE":
        assert groups == []
    elif group_by == "MEMBER":
        assert [(g["member"]["name"], g["inbox"], g["totals"]["messages"]) for g in groups] == [
            ("Ada", None, 0),
            ("Ben", None, 2),
        ]
    else:
        assert [(g["member"], g["inbox"]["phoneNumber"], g["totals"]) for g in groups] == [
            (None, "+14155550100", {"messages": 1})
        ]
    assert all(len(g["series"]) == buckets for g in groups)


async def test_defaults_are_all_time_by_day_without_groups(
    api: Api, account: NewAccount, traffic: tuple[str, Inbox, Inbox]
) -> None:
    usage = data(await api(DEFAULTS, token=account.token.secret))["account"]["usage"]
    assert (usage["start"], usage["end"], usage["granularity"]) == (
        "2026-01-05",
        "2026-01-15",
        "DAY",
    )
    assert len(usage["series"]) == 11
    assert usage["groups"] == []


@pytest.mark.parametrize(
    "days",
    [
        {"start": "2026-01-31", "end": "2026-01-01"},
        {"start": "2000-01-01", "end": "2010-12-31"},
    ],
)
async def test_a_bad_range_is_bad_user_input_naming_range(
    api: Api, account: NewAccount, days: dict[str, str]
) -> None:
    body = await api(
        ACCOUNT_USAGE,
        {"range": days, "granularity": "DAY", "groupBy": "NONE"},
        token=account.token.secret,
    )
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "range"
    assert "'range'" in error["message"]


async def test_a_member_reads_its_own_usage_only(
    api: Api, account: NewAccount, traffic: tuple[str, Inbox, Inbox]
) -> None:
    # given
    token, _, _ = traffic
    ben = await Member.get(email_key="ben@acme.example")
    # when
    own = data(await api(VIEWER_USAGE, {"range": JANUARY}, token=token))["viewer"]
    account_usage = await api(ACCOUNT_USAGE, {"granularity": "DAY", "groupBy": "NONE"}, token=token)
    inboxes = await api(INBOX_USAGE, token=token)
    members = await api(MEMBERS_USAGE, token=token)
    # then
    assert own["id"] == str(ben.id)
    assert own["usage"]["totals"]["messages"] == 2
    assert [b["figures"]["messages"] for b in own["usage"]["series"]][4:15:9] == [1, 1]
    for body, path in (
        (account_usage, ["account", "usage"]),
        (inboxes, ["account", "inboxes", 0, "usage"]),
    ):
        (error,) = body["errors"]
        assert (error["extensions"]["code"], error["path"]) == ("FORBIDDEN", path)
    refused = [e for e in members["errors"] if e["extensions"]["code"] == "FORBIDDEN"]
    assert [e["path"][2] for e in refused] == [0]  # Ada's, not Ben's own
    assert members["data"] is None or members["data"]["account"] is None


async def test_an_admin_reads_every_member_and_inbox(
    api: Api, account: NewAccount, traffic: tuple[str, Inbox, Inbox]
) -> None:
    members = data(await api(MEMBERS_USAGE, token=account.token.secret))["account"]["members"]
    inboxes = data(await api(INBOX_USAGE, token=account.token.secret))["account"]["inboxes"]
    assert [m["usage"]["totals"]["messages"] for m in members] == [0, 2]
    assert sorted((i["kind"], i["usage"]["totals"]["messages"]) for i in inboxes) == [
        ("PERSONAL", 2),
        ("SHARED", 1),
    ]


async def test_a_new_timezone_moves_a_late_message_to_another_day(
    api: Api, account: NewAccount, traffic: tuple[str, Inbox, Inbox]
) -> None:
    # given: 2026-01-14 23:30 in New York is 2026-01-15 04:30 in London
    days = {"start": "2026-01-14", "end": "2026-01-15"}
    before = await account_usage(api, account.token.secret, range=days)
    # when
    changed = await api(
        UPDATE_ACCOUNT, {"input": {"timezone": "Europe/London"}}, token=account.token.secret
    )
    # then
    assert data(changed)["updateAccount"]["userErrors"] == []
    after = await account_usage(api, account.token.secret, range=days)
    assert [b["figures"]["messages"] for b in before["series"]] == [1, 0]
    assert [b["figures"]["messages"] for b in after["series"]] == [0, 1]
    assert after["timezone"] == "Europe/London"
