"""Query limits over real HTTP: depth, aliases and tokens (RULES.md "Limits")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from api.app import create_app
from api.settings import Settings
from services.accounts import NewAccount
from services.runtime import Runtime


def nested(levels: int) -> str:
    """`{ viewer { personalInbox { owner { … { id } } } } }`: `levels` fields, then id."""
    fields = ["viewer"] + ["owner" if i % 2 == 0 else "personalInbox" for i in range(1, levels)]
    return "{ " + " { ".join(fields) + " { id }" + " }" * (levels - 1) + " }"


def aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: viewer {{ id }}" for i in range(count)) + " }"


async def post(client: httpx.AsyncClient, query: str, token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    response = await client.post("/graphql", json={"query": query}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    assert body["data"] is None
    [error] = body["errors"]
    extensions: dict[str, Any] = error["extensions"]
    assert extensions["code"] == "QUERY_TOO_COMPLEX", body
    return extensions


async def test_a_query_deeper_than_15_is_refused(
    client: httpx.AsyncClient, account: NewAccount
) -> None:
    # given a document 16 levels deep (top-level fields are level 0, as in graphql-depth-limit)
    query = nested(16)

    # when
    body = await post(client, query, account.token.secret)

    # then
    assert refusal(body) == {"code": "QUERY_TOO_COMPLEX", "limit": "depth", "maximum": 15}
    assert "exceeds maximum operation depth of 15" in body["errors"][0]["message"]


async def test_a_query_within_the_depth_limit_runs(
    client: httpx.AsyncClient, account: NewAccount
) -> None:
    body = await post(client, nested(15), account.token.secret)

    assert "errors" not in body, body
    assert body["data"]["viewer"] == {"personalInbox": None}  # the admin has no personal inbox


async def test_the_standard_introspection_query_passes(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": get_introspection_query()})

    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_a_thousand_aliases_are_refused(
    client: httpx.AsyncClient, account: NewAccount
) -> None:
    body = await post(client, aliases(1000), account.token.secret)

    assert refusal(body) == {"code": "QUERY_TOO_COMPLEX", "limit": "aliases", "maximum": 30}
    assert body["errors"][0]["message"] == "1000 aliases found. Allowed: 30"


async def test_thirty_aliases_are_allowed(client: httpx.AsyncClient, account: NewAccount) -> None:
    body = await post(client, aliases(30), account.token.secret)

    assert "errors" not in body, body
    assert len(body["data"]) == 30


async def test_a_huge_document_is_refused_before_it_is_parsed(
    client: httpx.AsyncClient, account: NewAccount
) -> None:
    # given 20,000 tokens: `{`, 19,998 times `__typename`, `}`
    query = "{ " + "__typename " * 19_998 + "}"

    # when
    body = await post(client, query, account.token.secret)

    # then
    assert refusal(body) == {"code": "QUERY_TOO_COMPLEX", "limit": "tokens", "maximum": 10_000}
    assert "more than 10000 tokens" in body["errors"][0]["message"]


@pytest.fixture
async def strict_client(settings: Settings, runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    strict = replace(settings, max_query_depth=3, max_query_aliases=2, max_query_tokens=50)
    app = create_app(strict, runtime=runtime, manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
        yield http


async def test_the_limits_come_from_the_settings(
    strict_client: httpx.AsyncClient, client: httpx.AsyncClient, account: NewAccount
) -> None:
    token = account.token.secret

    # when the same documents go to an app with lower limits and to one with the defaults
    deep = await post(strict_client, nested(4), token)
    aliased = await post(strict_client, aliases(3), token)
    long = await post(strict_client, "{ " + "__typename " * 60 + "}", token)
    default = await post(client, nested(4), token)

    # then only the strict app refuses them (no cached verdict crosses apps)
    assert refusal(deep)["maximum"] == 3
    assert refusal(aliased) == {"code": "QUERY_TOO_COMPLEX", "limit": "aliases", "maximum": 2}
    assert refusal(long)["limit"] == "tokens"
    assert "errors" not in default, default


def test_the_limits_are_read_from_the_environment() -> None:
    env = {
        "TALLY_MAX_QUERY_DEPTH": "20",
        "TALLY_MAX_QUERY_ALIASES": "5",
        "TALLY_MAX_QUERY_TOKENS": "2000",
    }

    settings = Settings.from_env(env)

    assert (settings.max_query_depth, settings.max_query_aliases) == (20, 5)
    assert settings.max_query_tokens == 2000
    assert Settings.from_env({}).max_query_depth == 15


async def test_first_stays_capped_at_100(client: httpx.AsyncClient, account: NewAccount) -> None:
    body = await post(
        client, "{ account { messages(first: 101) { edges { cursor } } } }", account.token.secret
    )

    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["argument"] == "first"


async def test_introspection_can_be_turned_off_and_typename_still_works(
    settings: Settings, runtime: Runtime, client: httpx.AsyncClient, account: NewAccount
) -> None:
    closed = create_app(replace(settings, introspection=False), runtime=runtime)
    token = account.token.secret
    transport = httpx.ASGITransport(app=closed)
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
        # when the standard introspection query goes to an app with it off, and to one with it on
        refused = await post(http, get_introspection_query(), token)
        typename = await post(http, "{ __typename viewer { id } }", token)
        open_ = await post(client, get_introspection_query(), token)

    # then only the closed app refuses it, with a code; __typename is not introspection
    assert refused["data"] is None
    assert refused["errors"]
    for error in refused["errors"]:
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "introspection has been disabled" in error["message"]
    assert typename["data"]["__typename"] == "Query"
    assert "errors" not in open_


def test_introspection_is_on_unless_turned_off() -> None:
    assert Settings.from_env({}).introspection
    assert not Settings.from_env({"TALLY_INTROSPECTION": "0"}).introspection
