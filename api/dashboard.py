"""The reference dashboard at /app/: one HTML shell; everything else is under /assets/app/.

The shell names every asset by its fingerprinted URL (api/static_files.py) and carries
an import map, so the modules' relative imports reach fingerprinted files too. It is
itself revalidated on every load (`no-cache`), so a new release shows at once.

The page holds an API token, so its Content-Security-Policy allows scripts from Tally
only (and the import map, by its hash), connections to Tally only, and no framing: an
injected script or a look-alike page elsewhere gets nothing. Styles may be inline, as
uPlot sets them on its elements.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from api import static_files

SHELL = "app/index.html"
APP_PATH = "/app/"


@dataclass(frozen=True, slots=True)
class Shell:
    html: str
    content_security_policy: str


@functools.cache
def shell() -> Shell:
    """The shell's HTML with its asset URLs filled in, and the policy that fits it."""
    modules: dict[str, str] = {}
    for folder in ("app", "vendor/graphql-ws", "vendor/uplot"):
        modules |= static_files.import_map(folder)
    # ASCII file names: json.dumps cannot write "</script>" from them.
    imports = json.dumps({"imports": modules})
    values = {
        "uplot_css": static_files.url("vendor/uplot/uPlot.min.css"),
        "app_css": static_files.url("app/app.css"),
        "main_js": static_files.url("app/main.js"),
        "import_map": imports,
    }
    digest = base64.b64encode(hashlib.sha256(imports.encode()).digest()).decode()
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' 'sha256-{digest}'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return Shell(static_files.page(SHELL, values), policy)


async def app_shell(request: Request) -> Response:
    page = shell()
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": page.content_security_policy}
    return HTMLResponse(page.html, headers=headers)


async def to_app(request: Request) -> Response:
    return RedirectResponse(APP_PATH, status_code=307)


def dashboard_routes() -> list[Route]:
    return [
        Route("/", to_app, methods=["GET", "HEAD"]),
        Route("/app", to_app, methods=["GET", "HEAD"]),
        Route(APP_PATH, app_shell, methods=["GET", "HEAD"]),
    ]
