"""HTTP request limits, as pure ASGI middleware (RULES.md "Limits").

`BodyLimit` refuses bodies over TALLY_MAX_BODY_BYTES with 413, on the declared
Content-Length and again while counting the received chunks (chunked bodies, lying
headers); the webhooks keep their own limit and refusal shape.

`GraphQLRefusals` keeps the refusals of /graphql JSON: Strawberry's plain-text 4xx
answers (bad JSON, a body that is not UTF-8 (api/graphql.py `decode_json`), wrong
content type, a mutation over GET) are re-sent, same status, as
`{"errors": [{"message", "extensions": {"code"}}]}`.

`WebSocketMessageLimit` closes a websocket with 1009 (message too big) when a message
is over the same TALLY_MAX_BODY_BYTES, whatever the ASGI server; `tally serve` also sets
uvicorn's ws_max_size to it, which refuses such frames before they are even buffered.

`http_middleware` also puts `SecurityHeaders` (nosniff, no-referrer, DENY framing) and
Starlette's CORS for TALLY_ALLOWED_ORIGINS outermost, so refusals carry them too, then
the rate limits (api/ratelimit.py).
"""

from __future__ import annotations

import json
from http import HTTPStatus

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.access_log import AccessLog
from api.graphql_media import GraphQLResponseMedia
from api.origins import OriginRefusalLog
from api.ratelimit import Limits, MemoryCounter, RateLimit, RedisCounter
from api.settings import Settings
from services.clock import Clock, SystemClock
from services.runtime import REDIS_SCHEMES

GRAPHQL_PATH = "/graphql"
# The webhooks read at most their own MAX_BODY_BYTES (the same 1 MiB) and refuse in
# their own documented shape, `{"error": {"code", "message"}}` (api/webhooks.py).
WEBHOOKS_PREFIX = "/webhooks/"
_BODY_HEADERS = (b"content-type", b"content-length")
MESSAGE_TOO_BIG = 1009
CORS_METHODS = ("GET", "POST", "OPTIONS")
CORS_HEADERS = ("Authorization", "Content-Type")
# GraphiQL is a top-level page, so DENY does not break it; it only forbids framing.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


def http_middleware(settings: Settings, clock: Clock | None = None) -> list[Middleware]:
    """Tally's HTTP middleware, outermost first; `clock` times the rate-limit windows."""
    limits = Limits(per_token=settings.rate_limit_per_token, per_ip=settings.rate_limit_per_ip)
    shared = settings.broadcast_url.startswith(REDIS_SCHEMES)
    counter = (
        RedisCounter(settings.broadcast_url, namespace=settings.redis_namespace)
        if shared
        else MemoryCounter()
    )
    return [
        Middleware(AccessLog),
        Middleware(SecurityHeaders),
        Middleware(OriginRefusalLog, allowed_origins=settings.allowed_origins),
        Middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
        ),
        Middleware(
            RateLimit,
            limits=limits,
            counter=counter,
            clock=clock or SystemClock(),
            trusted_proxies=settings.trusted_proxies,
        ),
        Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
        Middleware(WebSocketMessageLimit, max_bytes=settings.max_body_bytes),
        Middleware(GraphQLResponseMedia),
        Middleware(GraphQLRefusals),
    ]


def refusal(status: int, code: str, message: str) -> JSONResponse:
    """A GraphQL-style error body for an HTTP refusal: clients parse one shape."""
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status)


class _BodyRefused(Exception):
    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.body)
        self.response = response


async def _guarded(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run `app`; when `receive` refuses the body before the response started, answer that."""
    started = False

    async def watching_send(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, receive, watching_send)
    except _BodyRefused as refused:
        if started:
            raise
        await refused.response(scope, receive, send)


class SecurityHeaders:
    """Add SECURITY_HEADERS to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending_headers)


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(WEBHOOKS_PREFIX):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and not declared.strip().isdigit():
            await refusal(400, "BAD_REQUEST", "Content-Length is not a number.")(
                scope, receive, send
            )
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self.too_large()(scope, receive, send)
            return
        await _guarded(self.app, scope, self.counting(receive), send)

    def too_large(self) -> JSONResponse:
        message = f"Request bodies are at most {self.max_bytes} bytes."
        return refusal(413, "PAYLOAD_TOO_LARGE", message)

    def counting(self, receive: Receive) -> Receive:
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyRefused(self.too_large())
            return message

        return counting_receive


class WebSocketMessageLimit:
    """Close a websocket with 1009 when a message is over `max_bytes`; the app sees a disconnect."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        closed = False

        async def limited_receive() -> Message:
            nonlocal closed
            message = await receive()
            if message["type"] == "websocket.receive" and self.too_big(message):
                closed = True
                reason = f"Messages are at most {self.max_bytes} bytes."
                await send({"type": "websocket.close", "code": MESSAGE_TOO_BIG, "reason": reason})
                return {"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG}
            return message

        async def open_send(message: Message) -> None:
            # Once closed here, the app's last words (a late event, its own close) have
            # nobody to go to; the server would refuse them with an error.
            if not closed:
                await send(message)

        await self.app(scope, limited_receive, open_send)

    def too_big(self, message: Message) -> bool:
        data: bytes | None = message.get("bytes")
        if data is not None:
            return len(data) > self.max_bytes
        text: str = message.get("text") or ""
        # A character is 1 to 4 bytes of UTF-8: encode only when the length cannot tell.
        if len(text) * 4 <= self.max_bytes:
            return False
        return len(text) > self.max_bytes or len(text.encode()) > self.max_bytes


class GraphQLRefusals:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != GRAPHQL_PATH:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _json_refusals(send))


def _json_refusals(send: Send) -> Send:
    """Re-send a plain-text 4xx response as a GraphQL-style JSON error with the same status."""
    start: Message | None = None
    text = bytearray()

    async def rewriting_send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and _is_plain_refusal(message):
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        text.extend(message.get("body", b""))
        if not message.get("more_body", False):
            await _send_json(send, start, text.decode("utf-8", "replace"))

    return rewriting_send


def _is_plain_refusal(start: Message) -> bool:
    headers = Headers(raw=start.get("headers", []))
    is_text = headers.get("content-type", "").startswith("text/plain")
    return 400 <= start["status"] < 500 and is_text


async def _send_json(send: Send, start: Message, message: str) -> None:
    code = HTTPStatus(start["status"]).name
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()
    kept = [(k, v) for k, v in start.get("headers", []) if k.lower() not in _BODY_HEADERS]
    headers = [*kept, (b"content-type", b"application/json"), _length(body)]
    await send({"type": "http.response.start", "status": start["status"], "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _length(body: bytes) -> tuple[bytes, bytes]:
    return (b"content-length", str(len(body)).encode())
