"""One log line when a browser app on another origin is refused, naming the setting.

Starlette's CORS middleware answers a preflight from an origin not in
TALLY_ALLOWED_ORIGINS with a bare 400, and Strawberry refuses such a websocket handshake
with 403; the browser then shows the developer a CORS error and the server said
nothing. This logs, once per origin and process, which origin was refused and how to
allow it.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("tally")

# Origins already reported; bounded, so a scan of made-up origins cannot grow it.
MAX_REPORTED = 100


class OriginRefusalLog:
    def __init__(self, app: ASGIApp, *, allowed_origins: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = frozenset(allowed_origins)
        self.reported: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = (
            Headers(scope=scope).get("origin") if scope["type"] in {"http", "websocket"} else None
        )
        # An allowed origin refused for something else (a header CORS does not allow)
        # is not this line's business.
        allowed = origin in self.allowed or "*" in self.allowed
        if origin is None or allowed or not _is_cross_origin_attempt(scope):
            await self.app(scope, receive, send)
            return
        accepted = False

        async def watching_send(message: Message) -> None:
            nonlocal accepted
            kind = message["type"]
            if kind == "websocket.accept":
                accepted = True
            elif _is_refusal(message, accepted):
                self.report(scope, origin)
            await send(message)

        await self.app(scope, receive, watching_send)

    def report(self, scope: Scope, origin: str) -> None:
        if origin in self.reported or len(self.reported) >= MAX_REPORTED:
            return
        self.reported.add(origin)
        what = "websocket" if scope["type"] == "websocket" else "CORS preflight"
        log.warning(
            "refused a %s from origin %s: add it to TALLY_ALLOWED_ORIGINS "
            "(comma-separated origins, e.g. TALLY_ALLOWED_ORIGINS=%s) to allow it",
            what,
            origin[:200],
            origin[:200],
        )


def _is_cross_origin_attempt(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    if scope["type"] == "websocket":
        # A same-origin page (the dashboard) is never refused for its origin.
        return urlsplit(headers.get("origin", "")).netloc != headers.get("host")
    return scope["method"] == "OPTIONS" and "access-control-request-method" in headers


def _is_refusal(message: Message, accepted: bool) -> bool:
    kind = message["type"]
    if kind == "http.response.start":
        return bool(message["status"] == 400)
    if kind == "websocket.http.response.start":
        return bool(message["status"] == 403)
    return kind == "websocket.close" and not accepted
