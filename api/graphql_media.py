"""`application/graphql-response+json` for the clients that ask for it (GraphQL over HTTP).

A /graphql request whose Accept prefers `application/graphql-response+json` gets that
content type, and a request error (a document that does not parse or validate, or
variables that cannot be coerced: nothing was executed) is answered 400 without a
`data` entry, as the spec asks. Everything else keeps its status (200 for executed
operations, errors included). Clients asking for `application/json`, or for nothing,
get exactly what they got before: 200 and `"data": null` for request errors too.

The view marks a request error in the scope's state (`mark_request_error`) while it
builds the body; `GraphQLResponseMedia` rewrites the response on its way out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.access_log import request_state

MEDIA_TYPE = "application/graphql-response+json"
GRAPHQL_PATH = "/graphql"
_FLAG = "tally.graphql_request_error"
# The codes of errors found before execution (schema/extensions.py): a document refused,
# or a variable graphql-core could not coerce (BAD_USER_INPUT without a path).
_REQUEST_ERROR_CODES = frozenset(
    {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"}
)


def is_request_error(response: Mapping[str, object]) -> bool:
    """Whether a formatted GraphQL response reports a request that was never executed."""
    errors = response.get("errors")
    if response.get("data") is not None or not isinstance(errors, list) or not errors:
        return False
    return all(_before_execution(error) for error in errors)


def _before_execution(error: object) -> bool:
    if not isinstance(error, dict) or error.get("path") is not None:
        return False
    extensions = error.get("extensions")
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return code in _REQUEST_ERROR_CODES


def mark_request_error(scope: Scope) -> None:
    request_state(scope)[_FLAG] = True


def prefers_graphql_response(accept: str) -> bool:
    """Whether an Accept header ranks graphql-response+json above application/json."""
    ranks: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranks[media.lower()] = max(quality, ranks.get(media.lower(), 0.0))
    return ranks.get(MEDIA_TYPE, 0.0) > 0 and ranks[MEDIA_TYPE] >= ranks.get("application/json", 0)


class GraphQLResponseMedia:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != GRAPHQL_PATH
            or not prefers_graphql_response(Headers(scope=scope).get("accept", ""))
        ):
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _rewriting(scope, send))


def _rewriting(scope: Scope, send: Send) -> Send:
    start: Message | None = None
    body = bytearray()

    async def rewriting_send(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            if not _is_json(message):
                await send(message)
                return
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        body.extend(message.get("body", b""))
        if not message.get("more_body", False):
            await _send(send, start, bytes(body), request_error=_flagged(scope))

    return rewriting_send


def _is_json(start: Message) -> bool:
    content_type = Headers(raw=start.get("headers", [])).get("content-type", "")
    return content_type.split(";")[0].strip() == "application/json"


def _flagged(scope: Scope) -> bool:
    return bool(request_state(scope).get(_FLAG))


async def _send(send: Send, start: Message, body: bytes, *, request_error: bool) -> None:
    status = start["status"]
    if request_error and status == 200:
        document = json.loads(body)
        document.pop("data", None)
        body, status = json.dumps(document).encode(), 400
    kept = [
        (k, v)
        for k, v in start.get("headers", [])
        if k.lower() not in (b"content-type", b"content-length")
    ]
    headers = [
        *kept,
        (b"content-type", f"{MEDIA_TYPE}; charset=utf-8".encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({**start, "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
