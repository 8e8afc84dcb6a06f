"""Round trips of a usage report over HTTP: the account and the sums, nothing else (a token
seen before costs no query)."""

from __future__ import annotations

import pytest

from services.accounts import NewAccount
from tests.conftest import Api
from tests.services.test_usage_round_trips import statements

pytestmark = pytest.mark.usefixtures("db")

NINETY_DAYS = """{ account { usage(range: {start: "2025-10-18", end: "2026-01-15"}) {
  start end totals { messages } series { start end figures { segments messages } } } } }"""


async def test_a_ninety_day_report_takes_two_statements(api: Api, account: NewAccount) -> None:
    # given a token the server has seen
    await api("{ viewer { id } }", token=account.token.secret)
    # when
    with statements() as sql:
        body = await api(NINETY_DAYS, token=account.token.secret)
    # then: the account, the rollup sums
    assert "errors" not in body, body["errors"]
    assert len(body["data"]["account"]["usage"]["series"]) == 90
    assert len(sql) == 2, sql
    account_row, sums = sql
    assert 'FROM "account"' in account_row
    assert "FROM usage_account_day" in sums
