"""The webhook URL guard through the API: no endpoint inside the deployment's networks.

Only literal addresses and `localhost` are used, so the guard never sends (nor
resolves through the network) anything to a non-loopback address.
"""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from api.app import create_app
from api.settings import Settings
from models import WebhookEndpoint
from services.accounts import NewAccount
from services.runtime import Runtime
from services.url_guard import is_public
from tests.api.spend import data
from tests.conftest import Api

CREATE = """mutation($url: String!) { createWebhookEndpoint(input: {url: $url}) {
  endpoint { id } secret userErrors { code field message } } }"""

REFUSED = [
    "http://127.0.0.1/hook",
    "http://127.8.9.10:8080/hook",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://224.0.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[::]/hook",
    "http://[fe80::1]/hook",
    "http://[fc00::1]/hook",
    "http://[ff02::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://[::ffff:169.254.169.254]/hook",
    "http://localhost:8080/hook",
    "http://LOCALHOST./hook",
    "http://127.1/hook",
    "http://2130706433/hook",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_an_endpoint_on_a_non_public_address_is_refused(
    api: Api, account: NewAccount, url: str
) -> None:
    answer = (await data(api, account.token.secret, CREATE, url=url))["createWebhookEndpoint"]
    assert (answer["endpoint"], answer["secret"]) == (None, None)
    assert [(e["code"], e["field"]) for e in answer["userErrors"]] == [
        ("INVALID_VALUE", ["input", "url"])
    ]
    assert not await WebhookEndpoint.exists()


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::ffff:93.184.215.14"],
)
def test_public_addresses_pass_the_guard(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


async def test_private_addresses_are_allowed_when_the_deployment_says_so(
    account: NewAccount, database: str, runtime: Runtime
) -> None:
    settings = Settings.from_env(
        {"TALLY_DATABASE_URL": database, "TALLY_WEBHOOK_ALLOW_PRIVATE": "1"}
    )
    app = create_app(settings, runtime=runtime, manage_database=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tally.test"
    ) as http:
        answer = await data(Api(http), account.token.secret, CREATE, url="http://localhost:9/h")
    assert answer["createWebhookEndpoint"]["userErrors"] == []


def test_the_retry_schedule_and_the_guard_are_read_from_the_environment() -> None:
    assert Settings.from_env({}).webhook_retry_schedule == (10, 60, 300, 1800, 7200, 21600)
    assert Settings.from_env({}).webhook_allow_private is False
    custom = Settings.from_env({"TALLY_WEBHOOK_RETRY_SCHEDULE": "1, 2.5"})
    assert custom.webhook_retry_schedule == (1, 2.5)
    with pytest.raises(ValueError, match="0 or more"):
        Settings.from_env({"TALLY_WEBHOOK_RETRY_SCHEDULE": "5,-1"})
