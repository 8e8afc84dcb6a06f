"""A webhook receiver for tests: a Starlette app on a loopback port, in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.live_server import free_port


@dataclass(frozen=True)
class Delivered:
    body: bytes
    headers: dict[str, str]
    at: float  # time.monotonic()

    @property
    def json(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.body)
        return payload


@dataclass
class Receiver:
    """Records every POST; answers `status`, or never answers while `hang` is set."""

    url: str = ""
    status: int = 200
    hang: bool = False
    received: list[Delivered] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: Request) -> Response:
        delivered = Delivered(await request.body(), dict(request.headers), time.monotonic())
        async with self._arrived:
            self.received.append(delivered)
            self._arrived.notify_all()
        if self.hang:
            await asyncio.Event().wait()
        return Response(status_code=self.status)

    async def wait_for(self, count: int, seconds: float = 5.0) -> list[Delivered]:
        """The first `count` requests, once they have arrived."""
        async with asyncio.timeout(seconds), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)
        return self.received[:count]


@contextlib.asynccontextmanager
async def receiving(
    receiver: Receiver | None = None, port: int | None = None
) -> AsyncIterator[Receiver]:
    """A receiver listening on 127.0.0.1 until the block ends."""
    receiver = receiver or Receiver()
    port = port or free_port()
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
        timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        receiver.url = f"http://127.0.0.1:{port}/hook"
        yield receiver
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def verified(delivered: Delivered, secret: str) -> bool:
    """What a receiver does: check `Tally-Signature` against the raw body."""
    parts = dict(item.split("=", 1) for item in delivered.headers["tally-signature"].split(","))
    signed = f"{parts['t']}.".encode() + delivered.body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    """Wait until `check()` holds (what another task writes, e.g. a recorded attempt)."""
    async with asyncio.timeout(seconds):
        # Polling: the condition is a row another task writes, with nothing to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
