"""Write docs/screenshot-analytics.png and docs/screenshot-billing.png (`make screenshots`).

Starts `tally serve` on a fresh SQLite database seeded with the demo account, signs in as
its admin in Debian's chromium (Playwright), and photographs the two pages.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import Page, ViewportSize, async_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, _tokens  # noqa: E402
from tests.live_server import tally_serve  # noqa: E402

DOCS = ROOT / "docs"
VIEWPORT = ViewportSize(width=1280, height=860)


async def photograph(page: Page, view: str, path: Path) -> None:
    await page.get_by_role("navigation", name="Main").get_by_role("link", name=view).click()
    await page.get_by_role("heading", name=view).wait_for()
    # Let the chart, the live balance and the focus ring settle.
    await page.locator("body").click(position={"x": 5, "y": 500})
    await page.wait_for_timeout(600)
    await page.screenshot(path=path)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with tally_serve(f"sqlite://{tmp}/demo.db", Path(tmp)) as server:
            tokens = _tokens(await server.cli("seed-demo"))
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
                )
                page = await browser.new_page(viewport=VIEWPORT)
                await page.goto(f"{server.url}/app/#token={tokens['Ada Admin']}")
                await page.wait_for_selector("main[data-loaded]")
                await photograph(page, "Analytics", DOCS / "screenshot-analytics.png")
                await photograph(page, "Billing", DOCS / "screenshot-billing.png")
                await browser.close()
    sys.stdout.write("wrote docs/screenshot-analytics.png and docs/screenshot-billing.png\n")


if __name__ == "__main__":
    asyncio.run(main())
