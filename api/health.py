"""GET /healthz (the process answers) and GET /readyz (its database and Redis answer too).

No auth, no rate limit. /readyz is 200 `{"status": "ok", "checks": {...}}`, or 503 with
`"status": "unavailable"` and each failed check named `"failed"` (the cause is logged,
not shown: the endpoint is public).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tortoise import Tortoise

from api.settings import Settings
from services.runtime import REDIS_SCHEMES

log = logging.getLogger("tally")

CHECK_TIMEOUT_SECONDS = 2.0

Check = Callable[[], Awaitable[object]]


def health_routes(settings: Settings) -> list[Route]:
    """GET /healthz and GET /readyz."""
    checks: dict[str, Check] = {"database": _database}
    if settings.broadcast_url.startswith(REDIS_SCHEMES):
        checks["redis"] = lambda: _redis(settings.broadcast_url)

    async def readyz(request: Request) -> Response:
        results = {name: await _run(name, check) for name, check in checks.items()}
        ready = all(result == "ok" for result in results.values())
        body = {"status": "ok" if ready else "unavailable", "checks": results}
        return JSONResponse(body, status_code=200 if ready else 503)

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _run(name: str, check: Check) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await check()
    except Exception:
        log.warning("Readiness check %r failed", name, exc_info=True)
        return "failed"
    return "ok"


async def _database() -> object:
    return await Tortoise.get_connection("default").execute_query("SELECT 1")


async def _redis(url: str) -> object:
    client = aioredis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return await client.ping()
    finally:
        await client.aclose()
