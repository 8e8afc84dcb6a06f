"""Account.auditLog over HTTP: the entry of a mutation, its actor and the client's address."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from api.app import create_app
from api.client_address import client_address, trusted_networks
from api.settings import Settings
from models import AuditEntry
from models.enums import AuditAction
from services.accounts import NewAccount
from services.runtime import Runtime
from tests.api.test_subscriptions import Live, receive, send_json, transport_ws
from tests.conftest import Api

UPDATE_ACCOUNT = """
mutation ($input: UpdateAccountInput!) {
  updateAccount(input: $input) { account { name } userErrors { code field message } }
}
"""
AUDIT_LOG = """
query ($first: Int, $after: String, $range: DateRangeInput, $actions: [AuditAction!]) {
  account {
    auditLog(first: $first, after: $after, range: $range, actions: $actions) {
      nodes { action actor { id } targetId changes { field before after } ip }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""


async def rename(api: Api, account: NewAccount, name: str, **headers: str) -> None:
    response = await api.http.post(
        "/graphql",
        json={"query": UPDATE_ACCOUNT, "variables": {"input": {"name": name}}},
        headers={"Authorization": f"Bearer {account.token.secret}", **headers},
    )
    assert response.json()["data"]["updateAccount"]["userErrors"] == []


@pytest.fixture
async def proxied_api(settings: Settings, runtime: Runtime) -> AsyncIterator[Api]:
    """The API behind a proxy at the test client's address (127.0.0.1) and 10.0.0.0/8."""
    trusted = replace(settings, trusted_proxies=trusted_networks("127.0.0.1, 10.0.0.0/8"))
    app = create_app(trusted, runtime=runtime, manage_database=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tally.test") as http:
        yield Api(http)


async def test_an_update_is_logged_with_its_actor_and_the_peer_address(
    api: Api, account: NewAccount
) -> None:
    # when the admin renames the account, with a forged X-Forwarded-For
    await rename(api, account, "Acme Ltd", **{"X-Forwarded-For": "198.51.100.1"})
    # then the entry names the admin and the TCP peer: no proxy is trusted by default
    body = await api(AUDIT_LOG, token=account.token.secret)
    assert body["data"]["account"]["auditLog"]["nodes"] == [
        {
            "action": "ACCOUNT_UPDATED",
            "actor": {"id": str(account.admin.id)},
            "targetId": None,
            "changes": [{"field": "name", "before": '"Acme"', "after": '"Acme Ltd"'}],
            "ip": "127.0.0.1",
        }
    ]


async def test_behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client(
    proxied_api: Api, account: NewAccount
) -> None:
    hops = "192.0.2.66, 203.0.113.4, 10.1.2.3"
    await rename(proxied_api, account, "Acme Ltd", **{"X-Forwarded-For": hops})
    body = await proxied_api(AUDIT_LOG, token=account.token.secret)
    assert body["data"]["account"]["auditLog"]["nodes"][0]["ip"] == "203.0.113.4"


async def test_pages_newest_first_filtered_by_action(api: Api, account: NewAccount) -> None:
    for name in ("One", "Two", "Three"):
        await rename(api, account, name)
    token = account.token.secret
    first = await api(AUDIT_LOG, {"first": 2, "actions": ["ACCOUNT_UPDATED"]}, token=token)
    page = first["data"]["account"]["auditLog"]
    assert [n["changes"][0]["after"] for n in page["nodes"]] == ['"Three"', '"Two"']
    after = page["pageInfo"]["endCursor"]
    rest = await api(AUDIT_LOG, {"first": 2, "after": after}, token=token)
    assert [n["changes"][0]["after"] for n in rest["data"]["account"]["auditLog"]["nodes"]] == [
        '"One"'
    ]
    for actions in (["MEMBER_CREATED"], []):
        none = await api(AUDIT_LOG, {"actions": actions}, token=token)
        assert none["data"]["account"]["auditLog"]["nodes"] == []


async def test_a_reversed_range_is_bad_user_input(api: Api, account: NewAccount) -> None:
    reversed_range = {"start": "2026-02-01", "end": "2026-01-01"}
    body = await api(AUDIT_LOG, {"range": reversed_range}, token=account.token.secret)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", "not-an-address, 10.0.0.2", "10.0.0.1"),
        ("10.0.0.1", "192.0.2.1, 10.0.0.2", "192.0.2.1"),
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.1"),
        ("192.0.2.9", "198.51.100.1", "192.0.2.9"),
    ],
)
def test_only_a_trusted_peer_is_believed(peer: str, header: str | None, expected: str) -> None:
    headers = [] if header is None else [(b"x-forwarded-for", header.encode())]
    scope = {"type": "http", "client": (peer, 1234), "headers": headers}
    assert client_address(scope, trusted_networks("10.0.0.0/8")) == expected


async def test_a_mutation_over_a_websocket_is_logged_with_the_connection_s_address(
    live: Live, account: NewAccount
) -> None:
    async with transport_ws(live.ws_url, account.token.secret) as ws:
        mutation = 'mutation { updateAccount(input: {name: "Over WS"}) { userErrors { code } } }'
        await send_json(ws, {"id": "m", "type": "subscribe", "payload": {"query": mutation}})
        assert (await receive(ws))["type"] == "next"
    entry = await AuditEntry.get()
    assert (entry.action, entry.actor_id, entry.ip) == (
        AuditAction.ACCOUNT_UPDATED,
        account.admin.id,
        "127.0.0.1",
    )
