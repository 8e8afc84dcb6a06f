"""Rate limits per token and per IP, as pure ASGI middleware (RULES.md "Limits").

Fixed one-minute windows. A /graphql request with a bearer token counts against the
token (TALLY_RATE_LIMIT_PER_TOKEN), keyed by the SHA-256 of its secret, so no database
is read here; any other request counts against its IP (TALLY_RATE_LIMIT_PER_IP). Every
request also counts against its IP with a ceiling of IP_CEILING_FACTOR x the token
limit, so rotating made-up tokens cannot flood. Over a limit: 429, `Retry-After` and
`{"errors": [{"message", "extensions": {"code": "RATE_LIMITED"}}]}`.

Loading the dashboard or GraphiQL is never counted: the app shell (`/`, `/app/`), the
files under /assets/ and the GraphiQL page (a GET of /graphql asking for HTML, with no
query) are static, and a page load fetches a dozen of them.

Signed webhooks are never counted; a 401 (bad signature) from /webhooks/* counts against
the IP, and an IP over its limit is refused there before its body is read.

Websockets: each operation (a subscribe or start message) counts like a /graphql request
with the token of its connection's `connection_init`, against the same counters. The
middleware hands the connection an `OperationLimiter` through the ASGI scope
(`operation_limiter`); api/graphql.py refuses an operation over the limit with a
RATE_LIMITED error for its id, and the connection stays open.

Counters live in memory (one window's keys at a time), or in Redis when
TALLY_BROADCAST_URL is redis://…, shared by every process; when Redis fails the
request is let through and the failure logged (once a window).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.client_address import Network, client_address
from services.clock import Clock

log = logging.getLogger("tally")

WINDOW_SECONDS = 60
CODE = "RATE_LIMITED"
IP_CEILING_FACTOR = 5
KEY_PREFIX = "tally:ratelimit"
GRAPHQL_PATH = "/graphql"
WEBHOOKS_PREFIX = "/webhooks/"
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/", "/app", "/app/"})
UNLIMITED_PREFIXES = ("/assets/",)
LIMITER_SCOPE_KEY = "tally.operation_limiter"


@dataclass(frozen=True, slots=True)
class Limits:
    """Requests a window: per token, per IP without a token; the IP ceiling follows."""

    per_token: int
    per_ip: int

    @property
    def ip_ceiling(self) -> int:
        return self.per_token * IP_CEILING_FACTOR


def bearer_secret(header: object) -> str | None:
    """The secret of an `Authorization: Bearer <secret>` value, or None."""
    if not isinstance(header, str):
        return None
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


class Counter(Protocol):
    async def hit(self, keys: Sequence[str], window: int) -> list[int]:
        """Add one to each key in this window; the new counts."""
        ...

    async def peek(self, key: str, window: int) -> int:
        """The key's count in this window."""
        ...

    async def aclose(self) -> None: ...


class MemoryCounter:
    """This process's counters; a new window drops the old one's keys."""

    def __init__(self) -> None:
        self._window = -1
        self._counts: dict[str, int] = {}

    async def hit(self, keys: Sequence[str], window: int) -> list[int]:
        self._roll(window)
        for key in keys:
            self._counts[key] = self._counts.get(key, 0) + 1
        return [self._counts[key] for key in keys]

    async def peek(self, key: str, window: int) -> int:
        self._roll(window)
        return self._counts.get(key, 0)

    async def aclose(self) -> None:
        return None

    def _roll(self, window: int) -> None:
        if window != self._window:
            self._window = window
            self._counts = {}


class RedisCounter:
    """Counters shared by every process: INCR + EXPIRE in one pipeline."""

    def __init__(self, url: str, *, namespace: str = "") -> None:
        # On every request's path: fail fast, then fail open.
        self._redis = aioredis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        self._namespace = namespace

    async def hit(self, keys: Sequence[str], window: int) -> list[int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                name = _name(key, window, self._namespace)
                pipe.incr(name)
                pipe.expire(name, 2 * WINDOW_SECONDS)
            results = await pipe.execute()
        return [int(count) for count in results[::2]]

    async def peek(self, key: str, window: int) -> int:
        count = await self._redis.get(_name(key, window, self._namespace))
        return int(count or 0)

    async def aclose(self) -> None:
        await self._redis.aclose()


def _name(key: str, window: int, namespace: str = "") -> str:
    prefix = f"tally:{namespace}:ratelimit" if namespace else KEY_PREFIX
    return f"{prefix}:{window}:{key}"


class RateLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: Limits,
        counter: Counter,
        clock: Clock,
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        self.app = app
        self.limits = limits
        self.counter = counter
        self.clock = clock
        self.trusted_proxies = trusted_proxies
        self._warned_window = -1

    def _client_ip(self, scope: Scope) -> str:
        """The client's address, as the audit log reads it (api/client_address.py)."""
        return client_address(scope, self.trusted_proxies) or "unknown"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            try:
                await self.app(scope, receive, send)
            finally:
                await self.counter.aclose()
            return
        if scope["type"] == "websocket":
            scope[LIMITER_SCOPE_KEY] = OperationLimiter(self, self._client_ip(scope))
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http" or _unlimited(scope):
            await self.app(scope, receive, send)
            return
        now = self.clock.now().timestamp()
        if scope["path"].startswith(WEBHOOKS_PREFIX):
            await self.webhook(scope, receive, send, now)
            return
        if await self.over(self.checks(scope), now):
            await _too_many(now)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def checks(self, scope: Scope) -> list[tuple[str, int]]:
        """(key, limit) pairs this request counts against."""
        secret = None
        if scope["path"] == GRAPHQL_PATH:
            secret = bearer_secret(Headers(scope=scope).get("authorization"))
        return self.checks_for(self._client_ip(scope), secret)

    def checks_for(self, ip: str, secret: str | None) -> list[tuple[str, int]]:
        """(key, limit) pairs of a request from `ip` with the bearer `secret` (or none)."""
        if secret is None:
            own = (f"anon:{ip}", self.limits.per_ip)
        else:
            own = (f"token:{hashlib.sha256(secret.encode()).hexdigest()}", self.limits.per_token)
        return [(f"ip:{ip}", self.limits.ip_ceiling), own]

    async def over(self, checks: Sequence[tuple[str, int]], now: float) -> bool:
        """Count a request against `checks`; whether that took it over any limit."""
        counts = await self.hit([key for key, _ in checks], now)
        return any(count > limit for count, (_, limit) in zip(counts, checks, strict=True))

    async def webhook(self, scope: Scope, receive: Receive, send: Send, now: float) -> None:
        """Signed webhooks pass uncounted; a bad signature (401) counts against the IP."""
        key = f"anon:{self._client_ip(scope)}"
        if await self.peek(key, now) >= self.limits.per_ip:
            await _too_many(now)(scope, receive, send)
            return
        status = 0

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watching_send)
        if status == 401:
            await self.hit([key], now)

    async def hit(self, keys: Sequence[str], now: float) -> list[int]:
        try:
            return await self.counter.hit(keys, _window(now))
        except (RedisError, OSError):
            self._failed_open(now)
            return [0] * len(keys)

    async def peek(self, key: str, now: float) -> int:
        try:
            return await self.counter.peek(key, _window(now))
        except (RedisError, OSError):
            self._failed_open(now)
            return 0

    def _failed_open(self, now: float) -> None:
        if self._warned_window != _window(now):
            self._warned_window = _window(now)
            log.warning("Rate limit counters unavailable: letting requests through", exc_info=True)


class OperationLimiter:
    """The rate limits of one websocket connection's operations (from one IP)."""

    def __init__(self, rate_limit: RateLimit, ip: str) -> None:
        self._rate_limit = rate_limit
        self._ip = ip

    async def admit(self, secret: str | None) -> int | None:
        """Count an operation sent with the bearer `secret`: None, or seconds to wait."""
        now = self._rate_limit.clock.now().timestamp()
        if await self._rate_limit.over(self._rate_limit.checks_for(self._ip, secret), now):
            return retry_after(now)
        return None


def operation_limiter(scope: Scope) -> OperationLimiter | None:
    """The limiter RateLimit gave this websocket; None for an app without the middleware."""
    limiter = scope.get(LIMITER_SCOPE_KEY)
    return limiter if isinstance(limiter, OperationLimiter) else None


def too_many_message(retry_after: int) -> str:
    return f"Too many requests: try again in {retry_after} s."


def retry_after(now: float) -> int:
    """Whole seconds until the window of `now` ends (at least 1)."""
    return max(1, math.ceil((_window(now) + 1) * WINDOW_SECONDS - now))


def _window(now: float) -> int:
    return int(now // WINDOW_SECONDS)


def _unlimited(scope: Scope) -> bool:
    path: str = scope["path"]
    return path in UNLIMITED_PATHS or path.startswith(UNLIMITED_PREFIXES) or _is_ide_page(scope)


def _is_ide_page(scope: Scope) -> bool:
    """GraphiQL's page: what Strawberry answers with it (`should_render_graphql_ide`)."""
    if scope["path"] != GRAPHQL_PATH or scope["method"] != "GET":
        return False
    if b"query=" in scope.get("query_string", b""):
        return False
    return "text/html" in Headers(scope=scope).get("accept", "")


def _too_many(now: float) -> JSONResponse:
    seconds = retry_after(now)
    body = {"errors": [{"message": too_many_message(seconds), "extensions": {"code": CODE}}]}
    return JSONResponse(body, status_code=429, headers={"Retry-After": str(seconds)})
