"""Access logs: one JSON line per HTTP request and per websocket connection.

Each gets a request id that the client also receives: the client's `X-Request-Id` when
it is a short, safe token (so a proxy's id carries through), made up otherwise. It is
echoed in the response (in the handshake's, for websockets), kept in the ASGI scope's
state for the GraphQL layer (masked errors carry it, see schema/extensions.py), and
written with the duration and account. An HTTP line has the method, path, status and
operation; a websocket's line is written when it closes, with the number of operations
sent over it and the close code (the server's, or else the client's).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("tally.access")

HEADER = b"x-request-id"
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Made-up ids: this process's random prefix and a counter, unique without a syscall each.
_PROCESS = os.urandom(6).hex()
_NUMBERS = itertools.count(1)


def request_state(scope: Scope) -> dict[str, Any]:
    """The per-request state dict that Starlette's `request.state` also reads and writes."""
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


def count_operation(scope: Scope) -> None:
    """Count one operation (subscribe or start message) sent over a websocket."""
    state = request_state(scope)
    state["operations"] = state.get("operations", 0) + 1


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self.websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _request_id(scope)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = _with_id(message, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            state = request_state(scope)
            _write(
                scope,
                started,
                method=scope["method"],
                status=status,
                operation=state.get("operation"),
            )

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _request_id(scope)
        request_state(scope)["operations"] = 0
        started = time.perf_counter()
        # 403 until accepted: a handshake closed before accept is refused with 403.
        status = 403
        close_code: int | None = None

        async def watching_receive() -> Message:
            nonlocal close_code
            message = await receive()
            if message["type"] == "websocket.disconnect" and close_code is None:
                close_code = message.get("code", 1005)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, close_code
            if message["type"] == "websocket.accept":
                status = 101
                message = _with_id(message, request_id)
            elif message["type"] == "websocket.http.response.start":
                status = message["status"]
            elif message["type"] == "websocket.close" and close_code is None:
                close_code = message.get("code", 1000)
            await send(message)

        try:
            await self.app(scope, watching_receive, send_with_id)
        finally:
            operations = request_state(scope)["operations"]
            _write(
                scope,
                started,
                method="WEBSOCKET",
                status=status,
                operations=operations,
                close_code=close_code,
            )


def _request_id(scope: Scope) -> str:
    """The request id, chosen once and kept in the scope's state."""
    offered = dict(scope["headers"]).get(HEADER, b"").decode("latin-1")
    request_id = offered if _SAFE_ID.fullmatch(offered) else f"{_PROCESS}{next(_NUMBERS):020x}"
    request_state(scope)["request_id"] = request_id
    return request_id


def _with_id(message: Message, request_id: str) -> Message:
    headers = [*message.get("headers", []), (HEADER, request_id.encode())]
    return {**message, "headers": headers}


def _write(scope: Scope, started: float, *, method: str, status: int, **fields: object) -> None:
    state = request_state(scope)
    client = scope.get("client")
    line = {
        "request_id": state["request_id"],
        "method": method,
        "path": scope["path"],
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "client": client[0] if client else None,
        **fields,
        "account_id": state.get("account_id"),
    }
    log.info(orjson.dumps(line).decode())
