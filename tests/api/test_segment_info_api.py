from __future__ import annotations

from typing import Any

import pytest

from models import LedgerEntry, Message
from services.accounts import NewAccount
from tests.conftest import Api

SEGMENT_INFO = """
query($body: String!) {
  segmentInfo(body: $body) {
    encoding units segments unitsPerSegment remainingInSegment nonGsmCharacters credits
  }
}
"""


async def segment_info(api: Api, account: NewAccount, body: str) -> dict[str, Any]:
    return await api(SEGMENT_INFO, {"body": body}, token=account.token.secret)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "Hello there",
            {"encoding": "GSM7", "units": 11, "segments": 1, "unitsPerSegment": 160},
            id="gsm7",
        ),
        pytest.param(
            "Price: 5€ [net]",
            {"encoding": "GSM7", "units": 18, "segments": 1, "unitsPerSegment": 160},
            id="gsm7-extension-characters-count-two",
        ),
        pytest.param(
            "a" * 161,
            {"encoding": "GSM7", "units": 161, "segments": 2, "unitsPerSegment": 153},
            id="gsm7-concatenated",
        ),
        pytest.param(
            "Hi 😀",
            {"encoding": "UCS2", "units": 5, "segments": 1, "unitsPerSegment": 70},
            id="ucs2-emoji-counts-two",
        ),
        pytest.param(
            "",
            {"encoding": "GSM7", "units": 0, "segments": 0, "unitsPerSegment": 160},
            id="empty",
        ),
    ],
)
async def test_segment_info_counts_units_and_segments(
    api: Api, account: NewAccount, body: str, expected: dict[str, Any]
) -> None:
    # when
    info = (await segment_info(api, account, body))["data"]["segmentInfo"]

    # then
    assert {key: info[key] for key in expected} == expected
    assert info["credits"] == info["segments"]


async def test_segment_info_shows_what_is_left_in_the_last_segment(
    api: Api, account: NewAccount
) -> None:
    info = (await segment_info(api, account, "a" * 161))["data"]["segmentInfo"]
    assert info["remainingInSegment"] == 2 * 153 - 161


async def test_segment_info_lists_the_characters_that_force_ucs2_once_in_order(
    api: Api, account: NewAccount
) -> None:
    info = (await segment_info(api, account, "çaça 😀 ç"))["data"]["segmentInfo"]
    assert info["nonGsmCharacters"] == ["ç", "😀"]
    assert info["remainingInSegment"] == 70 - info["units"]


async def test_segment_info_takes_bodies_above_the_message_limit(
    api: Api, account: NewAccount
) -> None:
    # given a draft over the 1,600 characters a message may have, but within 10,000
    body = "a" * 10_000

    # when
    info = (await segment_info(api, account, body))["data"]["segmentInfo"]

    # then the indicator still shows what it would cost
    assert (info["units"], info["segments"]) == (10_000, 66)


async def test_segment_info_refuses_bodies_over_10000_characters_naming_body(
    api: Api, account: NewAccount
) -> None:
    # when
    response = await segment_info(api, account, "a" * 10_001)

    # then
    [error] = response["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "'body'" in error["message"]
    assert response["data"] is None


async def test_segment_info_stores_and_charges_nothing(api: Api, account: NewAccount) -> None:
    await segment_info(api, account, "Hello")
    assert await Message.all().count() == 0
    assert await LedgerEntry.filter(account_id=account.account.id).count() == 1


async def test_segment_info_needs_a_token(api: Api, account: NewAccount) -> None:
    response = await api(SEGMENT_INFO, {"body": "Hi"}, token=None)
    assert response["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_an_unpaired_surrogate_is_echoed_as_an_escape_not_a_server_error(
    api: Api, account: NewAccount
) -> None:
    # json.loads accepts "\ud800" in a request; orjson cannot write it back
    response = await api.http.post(
        "/graphql",
        content=(
            b'{"query": "query($b: String!) { segmentInfo(body: $b) { nonGsmCharacters } }",'
            b' "variables": {"b": "\\ud800"}}'
        ),
        headers={
            "Authorization": f"Bearer {account.token.secret}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 200
    assert b'"nonGsmCharacters":["\\ud800"]' in response.content.replace(b" ", b"")
