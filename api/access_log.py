"""Access logs: one JSON line per HTTP request, with a request id the client also receives.

The id comes from the client's `X-Request-Id` when it is a short, safe token (so a proxy's
id carries through), and is made up otherwise. It is echoed in the response, kept in the
ASGI scope's state for the GraphQL layer (masked errors carry it, see schema/extensions.py),
and written with the method, path, status, duration, operation and account.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("tally.access")

HEADER = b"x-request-id"
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_state(scope: Scope) -> dict[str, Any]:
    """The per-request state dict that Starlette's `request.state` also reads and writes."""
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = dict(scope["headers"]).get(HEADER, b"").decode("latin-1")
        request_id = offered if _SAFE_ID.fullmatch(offered) else uuid.uuid4().hex
        state = request_state(scope)
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (HEADER, request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            log.info(
                json.dumps(
                    {
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "client": client[0] if client else None,
                        "operation": state.get("operation"),
                        "account_id": state.get("account_id"),
                    }
                )
            )
