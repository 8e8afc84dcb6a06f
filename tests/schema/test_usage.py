"""Usage reports through the schema: the fast path's answer is graphql-core's, byte for byte.

The report's buckets and figures are the services' own objects (schema/usage.py), read
through plain fields; these tests pin both: same JSON with the fast path on and off, the
buckets built without per-field execution, and the attribute names lining up.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from strawberry.types.base import get_object_definition

from models import Inbox
from models.enums import Role
from schema.execution import PlainFieldsExecutor
from schema.usage import UsageBucket, UsageFigures
from services.access import Principal
from services.clock import FrozenClock
from services.members import create_member
from services.runtime import Runtime
from services.usage import BucketUsage, Figures
from tests.schema.conftest import Run
from tests.services.conftest import REGION, body_of, open_inbox, receive, send

FIGURES = "segments segmentsSent segmentsReceived messages messagesSent messagesReceived"
REPORT = f"""
query($granularity: Granularity!, $groupBy: UsageGroupBy!) {{
  account {{ usage(range: {{start: "2026-01-01", end: "2026-01-31"}},
                   granularity: $granularity, groupBy: $groupBy) {{
    start end granularity timezone totals {{ {FIGURES} }}
    series {{ start end figures {{ {FIGURES} }} }}
    groups {{ member {{ id name }} inbox {{ id phoneNumber }} totals {{ {FIGURES} }}
              series {{ start end figures {{ {FIGURES} }} }} }}
  }} }}
}}
"""
SHAPED_SERIES = """
query($withEnd: Boolean!, $skipSent: Boolean!) {
  account { usage(range: {start: "2026-01-01", end: "2026-01-31"}) {
    __typename
    series {
      __typename
      day: start
      end @include(if: $withEnd)
      ...Figures
      figures { sent: messagesSent @skip(if: $skipSent) ... on UsageFigures { __typename } }
      again: figures { messages }
    }
  } }
}
fragment Figures on UsageBucket { figures { segments messages } }
"""
NEW_YORK = ZoneInfo("America/New_York")

pytestmark = pytest.mark.usefixtures("db")


def at(local: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=NEW_YORK)


@pytest.fixture
async def traffic(admin: Principal, clock: FrozenClock, runtime: Runtime) -> None:
    """Messages on three days of January: a member's personal inbox and a shared inbox."""
    await create_member(
        actor=admin,
        name="Ben",
        email="ben@acme.example",
        role=Role.MEMBER,
        personal_phone_number="+14155550111",
        region=REGION,
        clock=clock,
    )
    personal = await Inbox.get(kind="PERSONAL")
    shared = await open_inbox(admin, clock)
    clock.set(at("2026-01-05T09:00"))
    await send(runtime, admin, personal, body_of(2))
    await receive(runtime, shared)
    clock.set(at("2026-01-14T23:30"))
    await receive(runtime, personal)
    await send(runtime, admin, shared, body_of(3))
    clock.set(at("2026-01-15T07:00"))


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize(("granularity", "group_by"), [("DAY", "MEMBER"), ("WEEK", "SHARED_INBOX")])
async def test_a_usage_report_is_the_same_with_and_without_the_fast_path(
    run: Run, granularity: str, group_by: str
) -> None:
    # when
    answers = await run(REPORT, granularity=granularity, groupBy=group_by)
    # then
    assert answers.fast == answers.normal
    usage = json.loads(answers.fast)["data"]["account"]["usage"]
    assert usage["totals"]["messages"] == 4
    assert usage["totals"]["segments"] == 7
    assert sum(bucket["figures"]["segmentsSent"] for bucket in usage["series"]) == 5
    assert len(usage["groups"]) == (2 if group_by == "MEMBER" else 1)


@pytest.mark.usefixtures("traffic")
@pytest.mark.parametrize(("with_end", "skip_sent"), [(True, False), (False, True)])
async def test_skip_include_fragments_aliases_and_typename_inside_series_match(
    run: Run, with_end: bool, skip_sent: bool
) -> None:
    answers = await run(SHAPED_SERIES, withEnd=with_end, skipSent=skip_sent)
    assert answers.fast == answers.normal
    usage = json.loads(answers.fast)["data"]["account"]["usage"]
    fifth = usage["series"][4]
    expected: dict[str, Any] = {"__typename": "UsageBucket", "day": "2026-01-05"}
    if with_end:
        expected["end"] = "2026-01-05"
    figures: dict[str, Any] = {"segments": 3, "messages": 2}
    if not skip_sent:
        figures["sent"] = 1
    expected["figures"] = {**figures, "__typename": "UsageFigures"}
    expected["again"] = {"messages": 2}
    assert usage["__typename"] == "UsageReport"
    assert fifth == expected


@pytest.mark.usefixtures("traffic")
async def test_a_report_s_buckets_are_built_without_executing_their_fields_one_by_one(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: every field graphql-core executes on its own, by path
    executed: list[list[str | int]] = []
    execute_field = PlainFieldsExecutor.execute_field

    def counting(self: PlainFieldsExecutor, *args: Any) -> Any:
        executed.append(args[3].as_list())
        return execute_field(self, *args)

    monkeypatch.setattr(PlainFieldsExecutor, "execute_field", counting)
    # when
    await run(REPORT, granularity="DAY", groupBy="MEMBER")
    # then: only the root and the resolvers ran field by field, never a bucket's fields
    assert executed == [["account"], ["account", "usage"]]


def test_the_services_objects_carry_every_field_of_the_usage_types() -> None:
    # given: the services' named tuples stand in for the schema's types (schema/usage.py)
    for schema_type, service_type in ((UsageFigures, Figures), (UsageBucket, BucketUsage)):
        fields = get_object_definition(schema_type, strict=True).fields
        names = {field.python_name for field in fields}
        attributes = set(service_type._fields) | {
            name for name, value in vars(service_type).items() if isinstance(value, property)
        }
        # then
        assert names <= attributes, (schema_type, names - attributes)
        assert all(field.is_basic_field for field in fields)
