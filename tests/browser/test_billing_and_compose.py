"""Billing and Compose in a real browser: live balances, purchases, the segment counter."""

from __future__ import annotations

import math
import time

from playwright.async_api import Page, WebSocketRoute, expect

from tests.browser.conftest import Demo, Tabs, sign_in

BALANCE = "{ account { balance { total subscriptionCredits purchasedCredits } } }"
FORECAST = "{ account { forecast { status dailyBurn subscriptionCreditsExpiring } } }"
SET_ALERTS = """mutation($t: [Int!]!) {
  setBalanceAlerts(input: {thresholds: $t}) { alerts { state } userErrors { message } }
}"""
BUY = """mutation($i: BuyCreditsInput!) {
  buyCredits(input: $i) { balance { total } userErrors { message } }
}"""


async def open_billing(tabs: Tabs, demo: Demo) -> Page:
    page = await tabs.open()
    await sign_in(page, demo, demo.admin)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    await expect(page.get_by_text("Live", exact=True)).to_be_visible()
    # the figures arrive with the first event or the overview, whichever is first
    await expect(total_credits(page)).not_to_have_text("–")
    return page


def total_credits(page: Page):
    return page.locator('[data-balance="total"]')


async def test_billing_shows_the_balance_by_bucket(tabs: Tabs, demo: Demo) -> None:
    page = await open_billing(tabs, demo)
    balance = (await demo.graphql(demo.admin, BALANCE))["account"]["balance"]
    await expect(total_credits(page)).to_have_text(f"{balance['total']:,}")
    await expect(page.locator('[data-balance="subscriptionCredits"]')).to_have_text(
        f"{balance['subscriptionCredits']:,}"
    )
    await expect(page.locator('[data-balance="purchasedCredits"]')).to_have_text(
        f"{balance['purchasedCredits']:,}"
    )
    # the entries come with the overview, which may land after the first event
    await expect(page.locator("#entries tr")).to_have_count(10)


async def test_billing_shows_the_run_out_forecast(tabs: Tabs, demo: Demo) -> None:
    page = await open_billing(tabs, demo)
    forecast = (await demo.graphql(demo.admin, FORECAST))["account"]["forecast"]
    # the demo's monthly allotment covers its pace
    assert forecast["status"] == "NOT_WITHIN_HORIZON"
    # rounded half up, as JavaScript's Math.round does
    pace = f"{math.floor(forecast['dailyBurn'] + 0.5):,} credits a day over the last 28 days"
    await expect(page.locator("#forecast")).to_have_text(
        f"At the recent pace ({pace}), the credits last beyond a year. "
        f"{forecast['subscriptionCreditsExpiring']:,} subscription credits are forecast to "
        "expire unused at the period end."
    )


async def test_billing_lists_the_balance_alerts_and_their_states(tabs: Tabs, demo: Demo) -> None:
    # given an alert far below the balance and one far above it
    alerts = await demo.graphql(demo.admin, SET_ALERTS, {"t": [10, 1_000_000]})
    assert [a["state"] for a in alerts["setBalanceAlerts"]["alerts"]] == ["ARMED", "FIRED"]
    try:
        # when an admin opens Billing
        page = await open_billing(tabs, demo)
        # then both are listed, lowest first, with their state
        await expect(page.locator("#alerts li")).to_have_text(
            ["Below 10 credits: armed", "Below 1,000,000 credits: fired"]
        )
    finally:
        await demo.graphql(demo.admin, SET_ALERTS, {"t": []})


async def test_buying_credits_updates_the_balance(tabs: Tabs, demo: Demo) -> None:
    page = await open_billing(tabs, demo)
    before = (await demo.graphql(demo.admin, BALANCE))["account"]["balance"]
    await page.get_by_label("Credits", exact=True).fill("250")
    await page.get_by_role("button", name="Buy credits").click()
    await expect(page.get_by_text("Bought 250 credits.")).to_be_visible()
    after = (await demo.graphql(demo.admin, BALANCE))["account"]["balance"]
    assert after["purchasedCredits"] == before["purchasedCredits"] + 250
    await expect(total_credits(page)).to_have_text(f"{after['total']:,}")
    await expect(page.locator("#entries tr").first).to_contain_text("purchase")


async def test_a_refused_purchase_is_explained_next_to_the_field(tabs: Tabs, demo: Demo) -> None:
    page = await open_billing(tabs, demo)
    before = await total_credits(page).inner_text()
    # the page checks what it can: a whole number
    await page.get_by_label("Credits", exact=True).fill("0")
    await page.get_by_role("button", name="Buy credits").click()
    await expect(page.locator("#credits-error")).to_have_text(
        "Enter a whole number of credits, 1 or more."
    )
    # and shows the API's userError for the rest
    await page.get_by_label("Credits", exact=True).fill("50")
    await page.get_by_role("button", name="Buy credits").click()
    await expect(page.locator("#credits-error")).to_have_text(
        "Buy 100 to 1,000,000 credits at a time."
    )
    await expect(total_credits(page)).to_have_text(before)


async def test_a_send_from_compose_changes_total_credits_on_another_page_within_2_seconds(
    tabs: Tabs, demo: Demo
) -> None:
    # given the admin watching Billing in one page
    billing = await open_billing(tabs, demo)
    before = await total_credits(billing).inner_text()
    # when a message is sent from Compose in another
    compose = await tabs.open()
    await sign_in(compose, demo, demo.admin)
    await compose.get_by_role("link", name="Compose").click()
    await compose.get_by_label("From inbox").select_option(label="Front desk (+14155550100)")
    await compose.get_by_label("To").fill("(415) 555-0199")
    await compose.get_by_label("Message").fill("Your cleaning is tomorrow at 9.")
    await compose.get_by_role("button", name="Send").click()
    sent = time.monotonic()
    # then the first page shows the new total within 2 seconds, without a reload
    await expect(total_credits(billing)).not_to_have_text(before, timeout=2000)
    assert time.monotonic() - sent < 2
    balance = (await demo.graphql(demo.admin, BALANCE))["account"]["balance"]
    await expect(total_credits(billing)).to_have_text(f"{balance['total']:,}")
    await expect(compose.get_by_role("status")).to_contain_text("Sent to +14155550199")


async def test_the_live_balance_reconnects_and_catches_up_after_a_server_restart(
    tabs: Tabs, demo: Demo
) -> None:
    # given Billing, whose websocket passes through a proxy the test can cut
    page = await tabs.open()
    sockets: list[WebSocketRoute] = []

    async def through(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        sockets.append(ws)

    await page.route_web_socket(demo.server.url.replace("http", "ws") + "/graphql", through)
    await sign_in(page, demo, demo.admin)
    await page.get_by_role("link", name="Billing").click()
    await expect(page.get_by_text("Live", exact=True)).to_be_visible()
    # when the server goes away as a restart does (1012), and credits are bought meanwhile
    await sockets[-1].close(code=1012, reason="Service Restart")
    await expect(page.get_by_text("Reconnecting…")).to_be_visible()
    bought = await demo.graphql(
        demo.admin,
        BUY,
        {"i": {"credits": 100, "idempotencyKey": "reconnect-test"}},
    )
    assert bought["buyCredits"]["userErrors"] == []
    # then the page reconnects by itself and shows the balance as it is now
    await expect(page.get_by_text("Live", exact=True)).to_be_visible(timeout=10_000)
    total = bought["buyCredits"]["balance"]["total"]
    await expect(total_credits(page)).to_have_text(f"{total:,}")
    assert len(sockets) == 2


async def test_the_segment_counter_follows_the_text_and_marks_ucs2_characters(
    tabs: Tabs, demo: Demo
) -> None:
    page = await tabs.open()
    await sign_in(page, demo, demo.member)
    await page.get_by_role("link", name="Compose").click()
    counter = page.locator("#counter")
    await page.get_by_label("Message").press_sequentially("Hello there")
    await expect(counter).to_contain_text("1 segment · GSM-7 · 149 of 160 left")
    await page.get_by_label("Message").press_sequentially(", ça va?")
    await expect(counter).to_contain_text("UCS-2")
    await expect(counter.locator("mark")).to_have_text(["ç"])
    await page.get_by_label("Message").fill("x" * 161)
    await expect(counter).to_contain_text("2 segments · GSM-7")


async def test_compose_shows_a_user_error_next_to_its_field(tabs: Tabs, demo: Demo) -> None:
    page = await tabs.open()
    await sign_in(page, demo, demo.member)
    await page.get_by_role("link", name="Compose").click()
    await page.get_by_label("To").fill("not a number")
    await page.get_by_label("Message").fill("Hi")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("#to-error")).not_to_be_empty()
    await expect(page.locator("#body-error")).to_be_empty()
