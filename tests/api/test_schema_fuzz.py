"""A fuzz run of the GraphQL schema over HTTP (issue 6): whatever is sent, no 5xx, no
internals in any error, a code on every error, and no credits move unless a send or a
purchase went through, and then the ledger still adds up to the balance.

Four kinds of request, each example against a fresh account (tests/api/fuzz_world.py),
with the admin's or the member's token: operations hypothesis-graphql builds from the
served schema, operations that break it in one place (its negative mode), fixed
operations with fuzzed variables (tests/api/fuzz_values.py), and malformed envelopes.
The runs are derandomised: CI sees the same examples every time.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from itertools import count
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

from api.app import create_app
from api.settings import Settings
from models.enums import LedgerEntryKind, Role
from schema import schema
from services.clock import FrozenClock
from services.payments import SimulatedPaymentProvider
from services.runtime import Runtime, broker_for
from tests.api.fuzz_values import JUNK, operations, resolved
from tests.api.fuzz_world import (
    Credits,
    Setup,
    World,
    check_answer,
    open_world,
    sent_strings,
)
from tests.conftest import _empty_tables

SDL = schema.as_str()
SERVED = graphql.build_schema(SDL)
DATE_NODES = st.dates(min_value=date(1, 1, 1)).map(lambda d: nodes.String(d.isoformat()))
ROLES = st.sampled_from([Role.ADMIN, Role.MEMBER])
DEFAULT_SETUP = Setup()
# Worlds with few or no credits, a card that declines, auto-recharge on: where sends and
# purchases take their less trodden paths.
SETUPS = st.builds(
    Setup,
    monthly_credits=st.sampled_from([30, 3, 0]),
    card=st.sampled_from(["tok_visa", "tok_chargeDeclined"]),
    auto_recharge=st.booleans(),
)
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    # Explaining a failure re-ran it hundreds of times (minutes); the shrunk example is enough.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    # Building a world and a request per example is slow by design, not a sign of a bad strategy.
    suppress_health_check=[HealthCheck.too_slow],
)
# The kinds of ledger entry each mutation may write when it is not refused. A send that
# the balance cannot cover first triggers an auto-recharge (RULES.md), refused or not.
# What a test sends for a fresh world: the request body, and the strings in it that an
# answer may quote back.
Build = Callable[[World], tuple[bytes, set[str]]]
MOVERS = {
    "sendMessage": {LedgerEntryKind.OUTBOUND_MESSAGE, LedgerEntryKind.AUTO_RECHARGE},
    "buyCredits": {LedgerEntryKind.PURCHASE, LedgerEntryKind.AUTO_RECHARGE},
}


class Stage:
    """The app under fuzz, with the outside world it runs with, and another account."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        clock: FrozenClock,
        payments: SimulatedPaymentProvider,
        other: World,
    ) -> None:
        self.http = http
        self.clock = clock
        self.payments = payments
        self.other = other
        self.numbers = count(1)

    def __repr__(self) -> str:
        # Hypothesis prints the arguments of a failing example; its request says it all.
        return "Stage()"

    async def world(self, setup: Setup) -> World:
        other = {
            "otherMember": self.other.ids["member"],
            "otherInbox": self.other.ids["sharedInbox"],
            "otherToken": self.other.ids["adminToken"],
        }
        n = next(self.numbers)
        return await open_world(n, setup, clock=self.clock, payments=self.payments, other=other)


@pytest.fixture(scope="module")
async def stage(database: str) -> AsyncIterator[Stage]:
    """One app for the module. A function-scoped fixture would be shared by every example of
    a test (hypothesis runs them all in one call); each example opens its own world instead."""
    await _empty_tables(database)
    broadcast = os.environ.get("TALLY_TEST_REDIS_URL") or "memory://"
    app_settings = Settings(
        database_url=database,
        broadcast_url=broadcast,
        secret_key="fuzz",
        webhook_secret="fuzz",
        # The fuzz is about answers, not quotas: no example may meet a 429.
        rate_limit_per_token=10**9,
        rate_limit_per_ip=10**9,
    )
    clock = FrozenClock(datetime(2026, 3, 9, 8, 30, tzinfo=UTC))
    payments = SimulatedPaymentProvider()
    runtime = Runtime(clock=clock, payments=payments, broker=broker_for(broadcast))
    app = create_app(app_settings, runtime=runtime, manage_database=False)
    # What escapes the app reaches the client as uvicorn would send it: a 500, checked.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    other = await open_world(0, DEFAULT_SETUP, clock=clock, payments=payments, other={})
    async with (
        runtime.running(),
        httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http,
    ):
        yield Stage(http, clock, payments, other)


def movable(body: dict[str, Any]) -> set[LedgerEntryKind]:
    """The entry kinds this answer allows to have appeared: none unless a mover got through."""
    data = body.get("data") or {}
    kinds: set[LedgerEntryKind] = set()
    for name, allowed in MOVERS.items():
        payload = data.get(name)
        if not isinstance(payload, dict):
            continue
        codes = {error.get("code") for error in payload.get("userErrors") or []}
        if not codes or (name == "sendMessage" and "INSUFFICIENT_CREDITS" in codes):
            kinds |= allowed
    return kinds


def describe(body: dict[str, Any]) -> None:
    """Tell `--hypothesis-show-statistics` what the examples reached: a fuzz that only ever
    meets validation errors proves little."""
    for error in body.get("errors") or []:
        event(f"error {error.get('extensions', {}).get('code')}")
    for name, payload in (body.get("data") or {}).items():
        if isinstance(payload, dict) and "userErrors" in payload:
            codes = sorted({str(error.get("code")) for error in payload["userErrors"]})
            event(f"{name}: {', '.join(codes) or 'done'}")


async def exchange(
    stage: Stage, role: Role, build: Build, setup: Setup = DEFAULT_SETUP
) -> dict[str, Any]:
    """Send what `build(world)` makes as `role` of a fresh world; check the answer and credits."""
    world = await stage.world(setup)
    content, echoes = build(world)
    before = await Credits.of(world.account_id)
    untouched = await Credits.of(stage.other.account_id)
    headers = {"Authorization": f"Bearer {world.token(role)}", "Content-Type": "application/json"}

    response = await stage.http.post("/graphql", content=content, headers=headers)

    body = check_answer(response, echoes)
    after = await Credits.of(world.account_id)
    after.check_consistent()
    assert await Credits.of(stage.other.account_id) == untouched
    allowed = movable(body)
    if not allowed:
        assert after == before, (content, body)
    assert after.new_kinds(before) <= allowed, (content, body)
    return body


def sent(request: dict[str, Any]) -> Build:
    def build(world: World) -> tuple[bytes, set[str]]:
        concrete = resolved(request, world.ids)
        return json.dumps(concrete).encode(), sent_strings(concrete.get("query"), concrete)

    return build


def document_of(operation: str) -> Build:
    def build(world: World) -> tuple[bytes, set[str]]:
        return json.dumps({"query": operation}).encode(), sent_strings(operation)

    return build


@settings(FUZZ, max_examples=120)
@given(operation=from_schema(SDL, custom_scalars={"Date": DATE_NODES}), role=ROLES, setup=SETUPS)
async def test_generated_operations_are_answered_cleanly(
    stage: Stage, operation: str, role: Role, setup: Setup
) -> None:
    describe(await exchange(stage, role, document_of(operation), setup))


@settings(FUZZ, max_examples=100)
@given(
    operation=from_schema(SDL, custom_scalars={"Date": DATE_NODES}, mode=Mode.NEGATIVE),
    role=ROLES,
)
async def test_operations_that_break_the_schema_are_refused_with_a_code(
    stage: Stage, operation: str, role: Role
) -> None:
    body = await exchange(stage, role, document_of(operation))

    describe(body)
    assert body.get("errors"), body


OPERATIONS = operations(SERVED)


def _request(document: str, variables: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({"query": st.just(document), "variables": variables})


# The mutations that move credits, three times as often as the rest (a list, as
# `st.one_of` would merge the repeated branches).
WITH_VARIABLES = st.sampled_from(
    [
        _request(op.document, op.variables)
        for op in OPERATIONS
        for _ in range(3 if any(f"{name}(" in op.document for name in MOVERS) else 1)
    ]
).flatmap(lambda request: request)


@settings(FUZZ, max_examples=250)
@given(request=WITH_VARIABLES, role=ROLES, setup=SETUPS)
async def test_fuzzed_variables_are_answered_cleanly(
    stage: Stage, request: dict[str, Any], role: Role, setup: Setup
) -> None:
    describe(await exchange(stage, role, sent(request), setup))


def _mangled(document: str, cut: int, noise: str) -> str:
    """The document cut somewhere and continued with noise: text the parser must refuse."""
    return document[: cut % len(document)] + noise


DOCUMENTS = st.sampled_from([op.document for op in OPERATIONS])
MANGLED = st.builds(_mangled, DOCUMENTS, st.integers(0, 10**4), st.text(max_size=5))
ENVELOPES = st.fixed_dictionaries(
    {"query": DOCUMENTS | MANGLED | JUNK},
    optional={
        "variables": JUNK,
        "operationName": st.sampled_from(["Fuzz", "", "Other"]) | JUNK,
        "extensions": JUNK,
    },
)


@settings(FUZZ, max_examples=100)
@given(request=ENVELOPES, role=ROLES)
async def test_malformed_requests_are_refused_with_a_code(
    stage: Stage, request: dict[str, Any], role: Role
) -> None:
    describe(await exchange(stage, role, sent(request)))


BUY = next(op.document for op in OPERATIONS if "buyCredits" in op.document)


def raw(body: str) -> Build:
    """A request body sent exactly as written: JSON that no encoder would produce."""
    return lambda world: (body.encode(), set())


def buy_with(credits: str) -> Build:
    variables = f'{{"input": {{"credits": {credits}, "idempotencyKey": "k"}}}}'
    return raw(f'{{"query": {json.dumps(BUY)}, "variables": {variables}}}')


# Numbers Python's json module reads although JSON has no such values, or no integer.
@pytest.mark.parametrize("credits", ["NaN", "Infinity", "-Infinity", "1e999", "100.5"])
async def test_a_credit_amount_that_is_not_an_integer_is_refused(
    stage: Stage, credits: str
) -> None:
    body = await exchange(stage, Role.ADMIN, buy_with(credits))

    assert body["data"] is None
    assert body["errors"], body


@pytest.mark.parametrize("credits", ["100.0", "1e2"])
async def test_an_integral_json_number_is_that_integer(stage: Stage, credits: str) -> None:
    body = await exchange(stage, Role.ADMIN, buy_with(credits))

    assert body["data"]["buyCredits"]["entry"]["credits"] == 100


DEEP = 100_000


# json.loads raises ValueError on an integer of over 4,300 digits (CVE-2020-10735) and
# RecursionError on nesting deeper than the interpreter's recursion limit.
@pytest.mark.parametrize(
    "build",
    [
        pytest.param(buy_with("9" * 5000), id="a-5000-digit-number"),
        pytest.param(
            raw(
                '{"query": "{ viewer { id } }", "variables": {"a": %s}}' % ("[" * DEEP + "]" * DEEP)
            ),
            id="arrays-nested-100000-deep",
        ),
    ],
)
async def test_json_that_python_cannot_read_is_a_400(stage: Stage, build: Build) -> None:
    body = await exchange(stage, Role.ADMIN, build)

    assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_document_nested_deeper_than_the_parser_goes_is_refused_with_a_code(
    stage: Stage,
) -> None:
    query = "{ viewer " + "{ personalInbox { owner " * 2000 + "{ id }" + " } }" * 2000 + " }"

    body = await exchange(stage, Role.ADMIN, document_of(query))

    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"], body
