"""Fixtures of the browser tests: Debian's chromium, driven by Playwright, against a real
`tally serve` seeded with the demo account, with every request to anything but that
server refused, so each test also proves the dashboard needs no internet.

Without /usr/bin/chromium these tests are skipped, except under CI=true (`.ci/run`),
where a missing browser is a failure.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    async_playwright,
)

from tests.live_server import Server, tally_serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Demo:
    """The seeded demo account on a live server, and a GraphQL client to check the page against."""

    server: Server
    tokens: dict[str, str]

    @property
    def admin(self) -> str:
        return self.tokens["Ada Admin"]

    @property
    def member(self) -> str:
        return self.tokens["Ben Member"]

    async def graphql(self, token: str, query: str, variables: dict[str, Any] | None = None) -> Any:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                self.server.url + "/graphql",
                json={"query": query, "variables": variables or {}},
                headers={"Authorization": f"Bearer {token}"},
            )
        body = response.json()
        assert "errors" not in body, body
        return body["data"]


def _tokens(seed_output: str) -> dict[str, str]:
    """Member name -> token, from `tally seed-demo`'s listing ("  Ada Admin (ADMIN)  tly_…")."""
    tokens = {}
    for line in seed_output.splitlines():
        if line.startswith("  ") and "tly_" in line:
            who, secret = line.strip().rsplit(maxsplit=1)
            tokens[who.rsplit(" (", 1)[0]] = secret
    return tokens


@pytest.fixture(scope="session")
async def demo(
    browser_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Demo]:
    async with tally_serve(browser_database_url, tmp_path_factory.mktemp("browser")) as server:
        yield Demo(server=server, tokens=_tokens(await server.cli("seed-demo")))


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run: {reason}")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="session")
async def playwright(chromium: Path) -> AsyncIterator[Playwright]:
    async with async_playwright() as running:
        yield running


@pytest.fixture(scope="session")
async def browser(playwright: Playwright, chromium: Path) -> AsyncIterator[Browser]:
    launched = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
    yield launched
    await launched.close()


@dataclass
class Tabs:
    """Opens pages that may only reach the server; whatever else they asked for is kept."""

    browser: Browser
    base_url: str
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def open(self, *, width: int = 1280, height: int = 900) -> Page:
        context = await self.browser.new_context(
            viewport={"width": width, "height": height}, accept_downloads=True
        )
        page = await context.new_page()
        await page.route("**/*", self._only_tally)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._policy_violations)
        return page

    def _policy_violations(self, message: ConsoleMessage) -> None:
        # Chromium reports what the Content-Security-Policy refused on the console.
        if message.type == "error" and "Content Security Policy" in message.text:
            self.errors.append(message.text)

    async def _only_tally(self, route: Route) -> None:
        url = route.request.url
        if url.startswith((self.base_url + "/", self.base_url.replace("http", "ws", 1))):
            await route.continue_()
            return
        self.refused.append(url)
        await route.abort()


@pytest.fixture
async def tabs(browser: Browser, demo: Demo) -> AsyncIterator[Tabs]:
    opened = Tabs(browser=browser, base_url=demo.server.url)
    yield opened
    for context in browser.contexts:
        await context.close()
    assert opened.refused == [], "the page asked for something other than Tally"
    assert opened.errors == [], "the page raised errors or broke its security policy"


async def sign_in(page: Page, demo: Demo, token: str) -> None:
    """Open the link `make run` prints, and wait for the first report."""
    await page.goto(f"{demo.server.url}/app/#token={token}")
    await page.wait_for_selector("main[data-loaded]")


async def reload_report(page: Page, change: Any) -> None:
    """Run `change` (a coroutine making the page load a report) and wait for that report."""
    before = await page.locator("main").get_attribute("data-loaded") or "0"
    await change
    await page.wait_for_function(
        "(before) => Number(document.querySelector('main').dataset.loaded) > before",
        arg=int(before),
    )
