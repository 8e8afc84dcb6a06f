"""The reference dashboard at /app/: one HTML shell; everything else is under /assets/app/.

The shell names every asset by its fingerprinted URL (api/static_files.py) and carries
an import map, so the modules' relative imports reach fingerprinted files too. It is
itself revalidated on every load (`no-cache`), so a new release shows at once.
"""

from __future__ import annotations

import functools
import json

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from api import static_files

SHELL = "app/index.html"
APP_PATH = "/app/"


@functools.cache
def shell() -> str:
    """The shell's HTML with its asset URLs filled in."""
    # "</" cannot appear in JSON written by json.dumps from these paths, which are ASCII
    # file names; the import map is a plain <script> body.
    modules: dict[str, str] = {}
    for folder in ("app", "vendor/graphql-ws", "vendor/uplot"):
        modules |= static_files.import_map(folder)
    imports = json.dumps({"imports": modules})
    values = {
        "uplot_css": static_files.url("vendor/uplot/uPlot.min.css"),
        "app_css": static_files.url("app/app.css"),
        "main_js": static_files.url("app/main.js"),
        "import_map": imports,
    }
    return static_files.page(SHELL, values)


async def app_shell(request: Request) -> Response:
    return HTMLResponse(shell(), headers={"Cache-Control": "no-cache"})


async def to_app(request: Request) -> Response:
    return RedirectResponse(APP_PATH, status_code=307)


def dashboard_routes() -> list[Route]:
    return [
        Route("/", to_app, methods=["GET", "HEAD"]),
        Route("/app", to_app, methods=["GET", "HEAD"]),
        Route(APP_PATH, app_shell, methods=["GET", "HEAD"]),
    ]
