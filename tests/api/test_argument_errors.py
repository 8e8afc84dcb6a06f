"""Bad arguments are BAD_USER_INPUT naming the argument; other bad documents are coded too.

The contract: "Bad arguments to queries: extensions.code = BAD_USER_INPUT, with a
message that names the argument." graphql-core refuses a value that does not fit its
type before any resolver runs, so these are checked at the edge, for literals and for
variables alike.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import schema.extensions
from services.accounts import NewAccount
from tests.conftest import Api

MESSAGES_IN = """
query ($range: DateRangeInput) {
  account { messages(first: 5, range: $range) { edges { node { id } } } }
}
"""


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    assert body["data"] is None, body
    [error] = body["errors"]
    return error  # type: ignore[no-any-return]


def bad_argument(body: dict[str, Any], argument: str) -> str:
    error = only_error(body)
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": argument}, error
    message: str = error["message"]
    assert f"'{argument}'" in message
    return message


@pytest.mark.parametrize(
    "day",
    [
        pytest.param("2026-02-30", id="no-such-day"),
        pytest.param("20260101", id="basic-form"),
        pytest.param("2026-W01-1", id="week-date"),
        pytest.param("tomorrow", id="words"),
    ],
)
async def test_a_date_literal_that_is_not_a_calendar_day_names_its_argument(
    api: Api, account: NewAccount, day: str
) -> None:
    query = (
        f'{{ account {{ messages(first: 5, range: {{start: "{day}", end: "2026-03-01"}}) '
        "{ edges { node { id } } } } }"
    )
    body = await api(query, token=account.token.secret)

    assert day in bad_argument(body, "range")


async def test_a_date_variable_that_is_not_a_calendar_day_names_its_argument(
    api: Api, account: NewAccount
) -> None:
    variables = {"range": {"start": "2026-02-30", "end": "2026-03-01"}}
    body = await api(MESSAGES_IN, variables, token=account.token.secret)

    bad_argument(body, "range")


async def test_a_variable_out_of_the_int_range_names_its_argument(
    api: Api, account: NewAccount
) -> None:
    query = "query ($n: Int!) { account { messages(first: $n) { edges { node { id } } } } }"
    body = await api(query, {"n": 99_999_999_999}, token=account.token.secret)

    assert "$n" in bad_argument(body, "first")


async def test_a_literal_of_the_wrong_type_names_its_argument(
    api: Api, account: NewAccount
) -> None:
    query = '{ account { messages(first: "ten") { edges { node { id } } } } }'
    body = await api(query, token=account.token.secret)

    bad_argument(body, "first")


async def test_a_huge_date_is_not_echoed_back_whole(api: Api, account: NewAccount) -> None:
    variables = {"range": {"start": "9" * 100_000, "end": "2026-03-01"}}
    body = await api(MESSAGES_IN, variables, token=account.token.secret)

    assert len(bad_argument(body, "range")) < 1_000


async def test_a_valid_date_range_is_accepted(api: Api, account: NewAccount) -> None:
    variables = {"range": {"start": "2026-01-01", "end": "2026-01-31"}}
    body = await api(MESSAGES_IN, variables, token=account.token.secret)

    assert "errors" not in body
    assert body["data"]["account"]["messages"]["edges"] == []


async def test_an_unknown_field_is_a_validation_failure(api: Api, account: NewAccount) -> None:
    body = await api("{ account { nope } }", token=account.token.secret)

    assert only_error(body)["extensions"] == {"code": "GRAPHQL_VALIDATION_FAILED"}


async def test_a_document_that_does_not_parse_is_a_parse_failure(
    api: Api, account: NewAccount
) -> None:
    body = await api("{ account { ", token=account.token.secret)

    assert only_error(body)["extensions"] == {"code": "GRAPHQL_PARSE_FAILED"}


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param("9999-12-31", "9999-12-31", id="the-last-day"),
        pytest.param("0001-01-01", "0001-01-31", id="the-first-days"),
    ],
)
async def test_ranges_at_the_ends_of_the_calendar_are_answered(
    api: Api, account: NewAccount, start: str, end: str
) -> None:
    ledger = MESSAGES_IN.replace("messages", "ledger")
    variables = {"range": {"start": start, "end": end}}
    for query in (MESSAGES_IN, ledger):
        body = await api(query, variables, token=account.token.secret)

        assert "errors" not in body, body


async def test_an_extension_failing_before_execution_is_masked(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(extension: object) -> bool:
        raise RuntimeError("SELECT secret FROM api_token")

    monkeypatch.setattr(schema.extensions, "_is_introspection_only", fail)
    response = await client.post("/graphql", json={"query": "{ viewer { id } }"})

    error = only_error(response.json())
    assert error["message"] == "Internal server error."
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]
    assert "SELECT" not in response.text
