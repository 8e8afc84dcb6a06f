"""Analytics in a real browser: the figures are the API's, for every range and breakdown."""

from __future__ import annotations

import httpx
from playwright.async_api import expect

from tests.browser.conftest import Demo, Tabs, reload_report, sign_in

USAGE = """query($range: DateRangeInput, $groupBy: UsageGroupBy!) {
  account { usage(range: $range, granularity: DAY, groupBy: $groupBy) {
    start end totals { segments segmentsSent segmentsReceived }
    groups { member { name } inbox { name } totals { segments } }
  } }
}"""
MEMBER_USAGE = """query($range: DateRangeInput) {
  viewer { usage(range: $range) { totals { segments segmentsSent segmentsReceived } } }
}"""
EXPORT = """mutation($input: UsageExportInput!) {
  createUsageExport(input: $input) { export { url } userErrors { message } }
}"""


def shown(count: int) -> str:
    return f"{count:,}"


async def figures(page) -> tuple[str, str, str]:
    keys = ("segments", "segmentsSent", "segmentsReceived")
    texts = [await page.locator(f'[data-figure="{key}"]').inner_text() for key in keys]
    return texts[0], texts[1], texts[2]


async def test_the_sign_in_link_shows_the_last_30_days_and_leaves_the_address_bar(
    tabs: Tabs, demo: Demo
) -> None:
    page = await tabs.open()
    await sign_in(page, demo, demo.admin)
    # the token is read once and gone from the address
    assert "token" not in page.url
    assert await page.evaluate("sessionStorage.getItem('tally.token')") == demo.admin
    await expect(page.get_by_role("button", name="Last 30 days")).to_have_attribute(
        "aria-pressed", "true"
    )
    start, end = (
        await page.get_by_label("From").input_value(),
        await page.get_by_label("To").input_value(),
    )
    usage = await demo.graphql(
        demo.admin, USAGE, {"range": {"start": start, "end": end}, "groupBy": "NONE"}
    )
    totals = usage["account"]["usage"]["totals"]
    assert await figures(page) == (
        shown(totals["segments"]),
        shown(totals["segmentsSent"]),
        shown(totals["segmentsReceived"]),
    )
    # one table row per day of the range, and a chart
    await expect(page.locator("#usage-table tbody tr")).to_have_count(30)
    await expect(page.locator("#chart canvas")).to_be_visible()


async def test_every_preset_and_typed_range_shows_the_api_s_figures(tabs: Tabs, demo: Demo) -> None:
    page = await tabs.open()
    await sign_in(page, demo, demo.admin)
    for preset in ("Last 7 days", "This month", "Last month", "All time"):
        await reload_report(page, page.get_by_role("button", name=preset).click())
        start = await page.get_by_label("From").input_value()
        end = await page.get_by_label("To").input_value()
        usage = await demo.graphql(
            demo.admin, USAGE, {"range": {"start": start, "end": end}, "groupBy": "NONE"}
        )
        assert (await figures(page))[0] == shown(usage["account"]["usage"]["totals"]["segments"])
    # All time is the API's range without arguments
    everything = await demo.graphql(demo.admin, USAGE, {"range": None, "groupBy": "NONE"})
    assert await page.get_by_label("From").input_value() == everything["account"]["usage"]["start"]
    # a typed range
    await page.get_by_label("From").fill("2026-01-01")
    await reload_report(page, page.get_by_label("To").fill("2026-03-31"))
    usage = await demo.graphql(
        demo.admin,
        USAGE,
        {"range": {"start": "2026-01-01", "end": "2026-03-31"}, "groupBy": "NONE"},
    )
    assert (await figures(page))[0] == shown(usage["account"]["usage"]["totals"]["segments"])


async def test_breaking_down_shows_one_row_per_member_or_shared_inbox(
    tabs: Tabs, demo: Demo
) -> None:
    page = await tabs.open()
    await sign_in(page, demo, demo.admin)
    start, end = (
        await page.get_by_label("From").input_value(),
        await page.get_by_label("To").input_value(),
    )
    for choice, group_by, header in (
        ("Members", "MEMBER", "Member"),
        ("Shared inboxes", "SHARED_INBOX", "Shared inbox"),
    ):
        await reload_report(page, page.get_by_label("Break down by").select_option(label=choice))
        usage = await demo.graphql(
            demo.admin, USAGE, {"range": {"start": start, "end": end}, "groupBy": group_by}
        )
        groups = usage["account"]["usage"]["groups"]
        rows = page.locator("#usage-table tbody tr")
        await expect(rows).to_have_count(len(groups))
        await expect(page.get_by_role("columnheader", name=header, exact=True)).to_be_visible()
        for index, group in enumerate(groups):
            name = (group["member"] or group["inbox"])["name"]
            cells = rows.nth(index).locator("td")
            assert await cells.nth(0).inner_text() == name
            assert await cells.nth(2).inner_text() == shown(group["totals"]["segments"])


async def test_export_csv_downloads_the_file_the_api_exports(tabs: Tabs, demo: Demo) -> None:
    page = await tabs.open()
    await sign_in(page, demo, demo.admin)
    await reload_report(page, page.get_by_label("Granularity").select_option(label="Week"))
    start, end = (
        await page.get_by_label("From").input_value(),
        await page.get_by_label("To").input_value(),
    )
    # when the admin exports
    async with page.expect_download() as waiting:
        await page.get_by_role("button", name="Export CSV").click()
    download = await waiting.value
    path = await download.path()
    # then the file is the one the API's export of the same report returns
    made = await demo.graphql(
        demo.admin,
        EXPORT,
        {
            "input": {
                "range": {"start": start, "end": end},
                "granularity": "WEEK",
                "groupBy": "NONE",
            }
        },
    )
    async with httpx.AsyncClient() as http:
        expected = (await http.get(made["createUsageExport"]["export"]["url"])).content
    assert download.suggested_filename.endswith(".csv")
    assert path.read_bytes() == expected
    assert expected.startswith(b"period_start,")


async def test_a_member_sees_its_own_usage_and_no_billing(tabs: Tabs, demo: Demo) -> None:
    page = await tabs.open()
    await sign_in(page, demo, demo.member)
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Analytics")).to_be_visible()
    await expect(nav.get_by_role("link", name="Compose")).to_be_visible()
    assert await nav.get_by_role("link", name="Billing").count() == 0
    # nor the account-wide controls
    assert await page.get_by_label("Break down by").count() == 0
    assert await page.get_by_role("button", name="Export CSV").count() == 0
    start, end = (
        await page.get_by_label("From").input_value(),
        await page.get_by_label("To").input_value(),
    )
    usage = await demo.graphql(demo.member, MEMBER_USAGE, {"range": {"start": start, "end": end}})
    totals = usage["viewer"]["usage"]["totals"]
    assert await figures(page) == (
        shown(totals["segments"]),
        shown(totals["segmentsSent"]),
        shown(totals["segmentsReceived"]),
    )
    # and typing the Billing address shows Analytics instead
    await page.goto(f"{demo.server.url}/app/#/billing")
    await expect(page.get_by_role("heading", name="Analytics")).to_be_visible()
