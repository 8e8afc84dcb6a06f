"""The first visit: offline GraphiQL, sign-in, a narrow screen, the keyboard, and speed.

The speed checks are the issue's goals: /app/ loads in under 1 s with every asset under
250 KB compressed in all, and two years by day render in under 500 ms. Each takes the
best of a few tries, so that a moment of load on a shared machine does not decide it.
With TALLY_BROWSER_FIGURES=<file> the measured figures are written there as JSON
(docs/benchmarks.md records them).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import urlencode

from playwright.async_api import Page, Route, expect

from tests.browser.conftest import Demo, Tabs, reload_report, sign_in

FIRST_LOAD_SECONDS = 1.0
ASSETS_BUDGET_BYTES = 250 * 1024
TWO_YEARS_RENDER_MS = 500
TRIES = 3


def record(name: str, value: object) -> None:
    target = os.environ.get("TALLY_BROWSER_FIGURES")
    if not target:
        return
    path = Path(target)
    figures = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**figures, name: value}, indent=2) + "\n")


async def test_graphiql_works_offline_and_opens_on_a_tally_example(tabs: Tabs, demo: Demo) -> None:
    page = await tabs.open()
    await page.goto(f"{demo.server.url}/graphql")
    editor = page.locator(".graphiql-query-editor")
    await expect(editor).to_contain_text("query Overview")
    await expect(editor).to_contain_text("balanceChanged")
    await expect(page.get_by_text("Welcome to GraphiQL")).to_have_count(0)


async def test_graphiql_runs_queries_and_subscriptions_with_the_token_of_its_headers(
    tabs: Tabs, demo: Demo
) -> None:
    page = await tabs.open()
    headers = json.dumps({"Authorization": f"Bearer {demo.admin}"})
    for document, expected in (
        ("{ viewer { name } }", '"name": "Ada Admin"'),
        ("subscription { balanceChanged { balance { total } } }", '"balanceChanged"'),
    ):
        query = urlencode({"q": document, "headers": headers})
        await page.goto(f"{demo.server.url}/graphql?{query}")
        await page.locator(".graphiql-execute-button").click()
        await expect(page.locator(".graphiql-response")).to_contain_text(expected)


async def test_signing_in_with_the_keyboard(tabs: Tabs, demo: Demo) -> None:
    page = await tabs.open()
    await page.goto(f"{demo.server.url}/")
    # the field has focus, and Enter signs in
    await expect(page.get_by_label("API token")).to_be_focused()
    await page.keyboard.type("tly_not_a_token")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    await page.get_by_label("API token").fill(demo.admin)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Analytics")).to_be_visible()
    # and every control of the page is reached with Tab, each with its visible label
    for label in ("From", "To", "Granularity", "Break down by"):
        await expect(page.get_by_label(label, exact=True)).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('tally.token')") is None


async def test_a_failed_sign_in_that_is_not_the_tokens_fault_keeps_the_token(
    tabs: Tabs, demo: Demo
) -> None:
    # given a server that cannot be reached for the first request
    page = await tabs.open()
    failures = [1]

    async def unreachable_once(route: Route) -> None:
        if failures:
            failures.pop()
            await route.abort()
        else:
            await route.fallback()

    await page.route(f"{demo.server.url}/graphql", unreachable_once)
    await page.goto(f"{demo.server.url}/app/#token={demo.admin}")
    # then the problem is shown, the token is kept, and "Sign in" tries again
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('tally.token')") == demo.admin
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Analytics")).to_be_visible()


async def test_an_admin_signing_in_after_a_member_in_one_tab_sees_billing(
    tabs: Tabs, demo: Demo
) -> None:
    page = await tabs.open()
    await sign_in(page, demo, demo.member)
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Compose")).to_be_visible()
    await expect(nav.get_by_role("link", name="Billing")).to_have_count(0)
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("API token").fill(demo.admin)
    await page.get_by_role("button", name="Sign in").click()
    await expect(nav.get_by_role("link", name="Billing")).to_be_visible()


async def tab_to(page: Page, name: str) -> None:
    """Press Tab until the element named `name` has focus (at most 30 times)."""
    for _ in range(30):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "document.activeElement.labels?.[0]?.textContent ?? document.activeElement.textContent"
        )
        if focused.strip() == name:
            return
    raise AssertionError(f"Tab never reached {name!r}")


async def test_composing_a_message_with_the_keyboard_alone(tabs: Tabs, demo: Demo) -> None:
    page = await tabs.open()
    await sign_in(page, demo, demo.member)
    await tab_to(page, "Compose")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Compose")).to_be_visible()
    await tab_to(page, "To")
    await page.keyboard.type("+1 415 555 0123")
    await tab_to(page, "Message")
    await page.keyboard.type("On my way")
    await expect(page.locator("#counter")).to_contain_text("1 segment")
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()
    await tab_to(page, "Send")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("Sent to +14155550123")


async def test_at_375_px_the_menu_folds_the_navigation_and_nothing_overflows(
    tabs: Tabs, demo: Demo
) -> None:
    page = await tabs.open(width=375, height=740)
    await sign_in(page, demo, demo.admin)
    menu = page.get_by_role("button", name="Menu")
    billing = page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing")
    await expect(menu).to_have_attribute("aria-expanded", "false")
    await expect(billing).to_be_hidden()
    await menu.click()
    await expect(billing).to_be_visible()
    await billing.click()
    await expect(page.get_by_role("heading", name="Billing")).to_be_visible()
    for view in ("Billing", "Analytics"):
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"{view} is {width} px wide"
        await page.goto(f"{demo.server.url}/app/#/analytics")


async def first_load(page: Page, demo: Demo) -> tuple[float, int]:
    """Seconds from navigation to the first report shown, and compressed bytes received."""
    sizes: list[int] = []
    page.on("response", lambda r: sizes.append(int(r.headers.get("content-length", "0"))))
    started = time.monotonic()
    await page.goto(f"{demo.server.url}/app/")
    await page.wait_for_selector("main[data-loaded]")
    return time.monotonic() - started, sum(sizes)


async def test_app_first_load_is_under_a_second_and_250_kb(tabs: Tabs, demo: Demo) -> None:
    tries = []
    for _ in range(TRIES):
        page = await tabs.open()
        # a token already in the session, as after the sign-in link
        await page.add_init_script(f"sessionStorage.setItem('tally.token', '{demo.admin}')")
        tries.append(await first_load(page, demo))
        await page.context.close()
    seconds = min(t for t, _ in tries)
    transferred = tries[0][1]
    record("first_load_seconds", round(seconds, 3))
    record("first_load_bytes", transferred)
    assert seconds < FIRST_LOAD_SECONDS
    assert transferred < ASSETS_BUDGET_BYTES


async def test_two_years_by_day_render_in_under_500_ms(tabs: Tabs, demo: Demo) -> None:
    seeded = json.loads(await demo.server.cli("seed-demo", "--messages", "20000", "--json"))
    page = await tabs.open()
    await sign_in(page, demo, seeded["token"])
    await reload_report(page, page.get_by_role("button", name="All time").click())
    assert await page.locator("#usage-table tbody tr").count() >= 730
    renders = []
    for preset in ["Last 30 days", "All time"] * TRIES:
        await reload_report(page, page.get_by_role("button", name=preset).click())
        if preset == "All time":
            renders.append(int(await page.locator("main").get_attribute("data-rendered-ms") or 0))
    record("two_years_by_day_render_ms", min(renders))
    assert min(renders) < TWO_YEARS_RENDER_MS
