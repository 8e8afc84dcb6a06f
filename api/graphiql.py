"""GraphiQL served with its own assets, so it works without internet.

Strawberry's page loads React and GraphiQL from a CDN and stays at "Loading..." offline;
this one loads the pinned copies under api/assets/vendor/ (scripts/vendor.py) and opens
on a Tally example instead of the generic welcome text.
"""

from __future__ import annotations

import functools

from starlette.responses import HTMLResponse

from api import static_files

TEMPLATE = "graphiql/index.html"


@functools.cache
def graphiql_html() -> str:
    values = {
        "graphiql_css": static_files.url("vendor/graphiql/graphiql.min.css"),
        "react_js": static_files.url("vendor/react/react.production.min.js"),
        "react_dom_js": static_files.url("vendor/react-dom/react-dom.production.min.js"),
        "graphiql_js": static_files.url("vendor/graphiql/graphiql.min.js"),
        "main_js": static_files.url("graphiql/main.js"),
    }
    return static_files.page(TEMPLATE, values)


def graphiql_page() -> HTMLResponse:
    return HTMLResponse(graphiql_html(), headers={"Cache-Control": "no-cache"})
