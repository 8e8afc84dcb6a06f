"""Billing and Compose in a real browser: live balances, purchases, the segment counter."""

from __future__ import annotations

import time

from playwright.async_api import Page, expect

from tests.browser.conftest import Demo, Tabs, sign_in

BALANCE = "{ account { balance { total subscriptionCredits purchasedCredits } } }"
INBOXES = "{ account { inboxes { id name kind } } }"


async def open_billing(tabs: Tabs, demo: Demo) -> Page:
    page = await tabs.open()
    await sign_in(page, demo, demo.admin)
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Billing").click()
    await expect(page.get_by_text("Live", exact=True)).to_be_visible()
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
    assert await page.locator("#entries tr").count() == 10


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


async def test_a_bad_purchase_is_explained_next_to_the_field(tabs: Tabs, demo: Demo) -> None:
    page = await open_billing(tabs, demo)
    await page.get_by_label("Credits", exact=True).fill("0")
    await page.get_by_role("button", name="Buy credits").click()
    await expect(page.locator("#credits-error")).not_to_be_empty()


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
