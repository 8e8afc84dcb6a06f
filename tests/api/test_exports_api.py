"""createUsageExport over GraphQL, and its file over plain HTTP without a bearer token."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from api.exports import CHUNK_BYTES
from models import Inbox, UsageExport
from services.access import Principal
from services.accounts import NewAccount
from services.clock import FrozenClock
from services.exports import HEADER, sign_export
from services.runtime import Runtime
from tests.api.test_accounts_api import add_member, errors_of, member_token
from tests.api.test_messages_api import open_shared_inbox
from tests.api.test_usage_api import JANUARY, at, data
from tests.conftest import Api
from tests.services.conftest import body_of, receive, send

CREATE_EXPORT = """
mutation($input: UsageExportInput!) {
  createUsageExport(input: $input) {
    export { id format url expiresAt rows }
    userErrors { code field message }
  }
}
"""
FIGURES = (
    "segments",
    "segmentsSent",
    "segmentsReceived",
    "messages",
    "messagesSent",
    "messagesReceived",
)
SERIES = f"series {{ start end figures {{ {' '.join(FIGURES)} }} }}"
USAGE = f"""
query($range: DateRangeInput, $granularity: Granularity!, $groupBy: UsageGroupBy!) {{
  account {{ usage(range: $range, granularity: $granularity, groupBy: $groupBy) {{
    {SERIES} groups {{ member {{ id name }} inbox {{ id name }} {SERIES} }} }} }}
}}
"""

pytestmark = pytest.mark.usefixtures("db")


@pytest.fixture
async def traffic(
    api: Api, account: NewAccount, admin: Principal, clock: FrozenClock, runtime: Runtime
) -> None:
    """Two members with personal inboxes and a shared inbox, with messages in January."""
    for name, number in [('Ben, "B"', "415 555 0101"), ("=Zoë", "415 555 0102")]:
        email = f"{len(name)}@acme.example"
        await add_member(
            api, account.token.secret, name=name, email=email, personalPhoneNumber=number
        )
    shared = await open_shared_inbox(admin, clock)
    ben, zoe = await Inbox.filter(kind="PERSONAL", owner_id__not=admin.member_id).order_by("id")
    clock.set(at("2026-01-05T09:00"))
    await send(runtime, admin, ben, body_of(2))
    await receive(runtime, shared)
    clock.set(at("2026-01-14T23:30"))
    await receive(runtime, zoe)
    await send(runtime, admin, shared, "Ça va? 🙂")
    clock.set(at("2026-01-28T10:00"))
    await send(runtime, admin, zoe, body_of(3))
    clock.set(at("2026-02-02T07:00"))


async def create_export(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    body = await api(CREATE_EXPORT, {"input": fields}, token=token)
    payload: dict[str, Any] = data(body)["createUsageExport"]
    return payload


async def made_export(api: Api, token: str, **fields: Any) -> dict[str, Any]:
    payload = await create_export(api, token, **fields)
    assert payload["userErrors"] == []
    export: dict[str, Any] = payload["export"]
    return export


def local(url: str) -> str:
    """The URL's path and query: the test client serves the app under its own host."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def records(response: httpx.Response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"), newline="")))


@pytest.mark.parametrize("granularity", ["DAY", "WEEK", "MONTH", "ALL"])
@pytest.mark.parametrize("group_by", ["NONE", "MEMBER", "SHARED_INBOX"])
@pytest.mark.usefixtures("traffic")
async def test_the_file_has_the_usage_reports_figures_row_by_row(
    api: Api,
    client: httpx.AsyncClient,
    account: NewAccount,
    granularity: str,
    group_by: str,
) -> None:
    # given
    token = account.token.secret
    args = {"range": JANUARY, "granularity": granularity, "groupBy": group_by}
    usage = data(await api(USAGE, args, token=token))["account"]["usage"]
    # when
    export = await made_export(api, token, **args)
    response = await client.get(local(export["url"]))  # no Authorization header
    # then
    assert response.status_code == 200, response.text
    rows = records(response)
    assert rows[0] == list(HEADER)
    assert export["rows"] == len(rows) - 1
    assert rows[1:] == expected_rows(usage, group_by, account)
    assert sum(int(row[5]) for row in rows[1:]) > 0


# The file writes names a spreadsheet would run as formulas with a leading quote.
WRITTEN = {"=Zoë": "'=Zoë"}


def expected_rows(usage: dict[str, Any], group_by: str, account: NewAccount) -> list[list[str]]:
    """The report as the file's rows: bucket by bucket, group by group."""
    if group_by == "NONE":
        parts = [("account", {"id": str(account.account.id), "name": "Acme"}, usage["series"])]
    else:
        kind = "member" if group_by == "MEMBER" else "shared_inbox"
        parts = [(kind, g["member"] or g["inbox"], g["series"]) for g in usage["groups"]]
    return [
        [
            bucket["start"],
            bucket["end"],
            kind,
            group["id"],
            WRITTEN.get(group["name"], group["name"]),
            *(str(series[index]["figures"][name]) for name in FIGURES),
        ]
        for index, bucket in enumerate(usage["series"])
        for kind, group, series in parts
    ]


async def test_the_file_is_csv_named_after_its_range_and_the_url_expires(
    api: Api, client: httpx.AsyncClient, account: NewAccount, clock: FrozenClock
) -> None:
    # given
    export = await made_export(api, account.token.secret, range=JANUARY, granularity="MONTH")
    # when
    response = await client.get(local(export["url"]))
    # then
    assert export["format"] == "CSV"
    assert export["expiresAt"] == "2026-01-15T12:15:00+00:00"
    assert export["url"].startswith(f"http://127.0.0.1:8000/exports/{export['id']}.csv?")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert (
        response.headers["content-disposition"]
        == 'attachment; filename="tally-usage-2026-01-01-2026-01-31.csv"'
    )
    assert (
        response.content
        == (
            ",".join(HEADER) + f"\r\n2026-01-01,2026-01-31,account,{account.account.id},Acme"
            ",0,0,0,0,0,0\r\n"
        ).encode()
    )
    # when 16 minutes have passed
    clock.advance(timedelta(minutes=16))
    gone = await client.get(local(export["url"]))
    # then
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "EXPIRED"


@pytest.mark.parametrize("part", ["signature", "id", "expires", "no signature", "no expires"])
async def test_a_tampered_url_is_forbidden(
    api: Api, client: httpx.AsyncClient, account: NewAccount, clock: FrozenClock, part: str
) -> None:
    # given
    export = await made_export(api, account.token.secret)
    url = urlsplit(export["url"])
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    export_id = export["id"]
    if part == "signature":
        query["signature"] = query["signature"][:-1] + (
            "0" if query["signature"][-1] != "0" else "1"
        )
    elif part == "id":
        export_id = str(int(export_id) + 1)
    elif part == "expires":
        query["expires"] = str(int(query["expires"]) + 3600)
    else:
        del query[part.removeprefix("no ")]
    # when: even an expired URL is refused for its signature first
    clock.advance(timedelta(hours=1))
    response = await client.get(f"/exports/{export_id}.csv?{urlencode(query)}")
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "INVALID_SIGNATURE"


async def test_an_unknown_but_signed_id_is_not_found(
    client: httpx.AsyncClient, account: NewAccount, clock: FrozenClock
) -> None:
    expires = str(int(clock.now().timestamp()) + 600)
    signature = sign_export(999999, expires, secret="test-secret")
    response = await client.get(f"/exports/999999.csv?expires={expires}&signature={signature}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_a_member_gets_forbidden_and_nothing_is_stored(api: Api, account: NewAccount) -> None:
    token = await member_token(api, account)
    body = await api(CREATE_EXPORT, {"input": {}}, token=token)
    [error] = body["errors"]
    assert (error["extensions"]["code"], error["path"]) == ("FORBIDDEN", ["createUsageExport"])
    assert await UsageExport.all().count() == 0


@pytest.mark.parametrize(
    "range_",
    [{"start": "2026-01-31", "end": "2026-01-01"}, {"start": "2000-01-01", "end": "2026-01-01"}],
)
async def test_a_reversed_or_too_long_range_is_an_invalid_value(
    api: Api, account: NewAccount, range_: dict[str, str]
) -> None:
    body = await api(CREATE_EXPORT, {"input": {"range": range_}}, token=account.token.secret)
    [error] = errors_of(body, "createUsageExport")
    assert (error["code"], error["field"]) == ("INVALID_VALUE", ["input", "range"])
    assert error["message"]
    assert await UsageExport.all().count() == 0


async def test_creating_an_export_needs_a_token(api: Api, account: NewAccount) -> None:
    body = await api(CREATE_EXPORT, {"input": {}}, token=None)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.usefixtures("traffic")
async def test_a_long_export_streams_whole(
    api: Api, client: httpx.AsyncClient, account: NewAccount
) -> None:
    # given: ten years by day, per member: some 570 KB, sent in many chunks
    days = {"start": "2016-01-01", "end": "2026-02-01"}
    export = await made_export(api, account.token.secret, range=days, groupBy="MEMBER")
    # when
    response = await client.get(local(export["url"]))
    # then
    rows = records(response)
    assert export["rows"] == len(rows) - 1 == 3685 * 3
    assert len(response.content) > 8 * CHUNK_BYTES
    assert response.content.endswith(b"\r\n")
    assert sum(int(row[8]) for row in rows[1:]) == 3  # the personal inboxes' messages
