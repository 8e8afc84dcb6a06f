"""The webhook dispatcher: one per server process, sending what the outbox holds.

It claims due deliveries when a change of this process commits notices (the
outbox's bell) and otherwise every `poll_seconds` (other processes' notices,
retries), and runs each attempt as a task of its own, never on a request's path.
Each endpoint has at most `per_endpoint` attempts in flight in a process: a claim
skips endpoints at their bound and gives back what exceeds it, so a slow endpoint
holds only its own deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx

from services import outbox, url_guard
from services.clock import Clock
from services.errors import TallyError
from services.outbox import Claimed
from services.signatures import HEADER, sign

log = logging.getLogger("tally.webhooks")


@dataclass(frozen=True, slots=True)
class DispatchRules:
    retry_schedule: tuple[float, ...] = outbox.DEFAULT_RETRY_SCHEDULE
    allow_private: bool = False
    timeout_seconds: float = 10.0
    per_endpoint: int = 10
    batch: int = 50
    poll_seconds: float = 1.0
    # Far above the timeout: a lease outlives any attempt its process is still making.
    lease: timedelta = field(default=timedelta(seconds=60))


class Dispatcher:
    def __init__(
        self,
        *,
        clock: Clock,
        rules: DispatchRules,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._clock = clock
        self._rules = rules
        self._transport = transport
        self._in_flight: Counter[int] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._bell = asyncio.Event()
        self._recorder = _Recorder(rules.retry_schedule)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Dispatch in the background for the life of the context."""
        transport = self._transport or (
            httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=20)
            )
            if self._rules.allow_private
            else url_guard.PublicOnlyTransport()
        )
        client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            timeout=self._rules.timeout_seconds,
        )
        self._bell = outbox.listen()
        loop = asyncio.create_task(self._loop(client), name="webhook-dispatcher")
        try:
            yield
        finally:
            outbox.stop_listening(self._bell)
            loop.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(loop, *self._tasks, return_exceptions=True)
            await self._recorder.aclose()
            await client.aclose()

    async def _loop(self, client: httpx.AsyncClient) -> None:
        while True:
            self._bell.clear()
            try:
                claimed = await self.dispatch_due(client)
            except Exception:
                log.exception("claiming webhook deliveries failed; retrying")
                claimed = 0
            if claimed >= self._rules.batch:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._rules.poll_seconds):
                    await self._bell.wait()

    async def dispatch_due(self, client: httpx.AsyncClient) -> int:
        """Claim due deliveries and start their attempts; how many were claimed."""
        rules = self._rules
        busy = [e for e, n in self._in_flight.items() if n >= rules.per_endpoint]
        claimed = await outbox.claim(
            now=self._clock.now(), lease=rules.lease, limit=rules.batch, busy=busy
        )
        for delivery in claimed:
            if self._in_flight[delivery.endpoint_id] >= rules.per_endpoint:
                await outbox.release(delivery)
                continue
            self._in_flight[delivery.endpoint_id] += 1
            task = asyncio.create_task(self._attempt(client, delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(claimed)

    async def _attempt(self, client: httpx.AsyncClient, delivery: Claimed) -> None:
        try:
            status_code, error = await self._send(client, delivery)
            attempt = outbox.Attempt(delivery, status_code, error, self._clock.now())
            await self._recorder.record(attempt)
        except Exception:
            log.exception("recording webhook delivery %s failed", delivery.id)
        finally:
            self._in_flight[delivery.endpoint_id] -= 1
            if self._in_flight[delivery.endpoint_id] <= 0:
                del self._in_flight[delivery.endpoint_id]
            # A slot is free: what waited for this endpoint may go now.
            self._bell.set()

    async def _send(
        self, client: httpx.AsyncClient, delivery: Claimed
    ) -> tuple[int | None, str | None]:
        """POST the delivery once: the answer's status code, or why there was none."""
        target = delivery.target
        if target.deleted:
            return None, outbox.CANCELLED
        try:
            parts = url_guard.checked_url(target.url)
            if not self._rules.allow_private:
                await url_guard.ensure_public(parts)
            timestamp = int(self._clock.now().timestamp())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Tally-Webhooks/1",
                HEADER: sign(target.secret, timestamp=timestamp, body=delivery.payload),
            }
            async with asyncio.timeout(self._rules.timeout_seconds):
                request = client.build_request(
                    "POST", target.url, content=delivery.payload, headers=headers
                )
                response = await client.send(request, stream=True)
                await response.aclose()
        except url_guard.UnsafeAddress as refused:
            return None, f"Refused: {refused}"
        except TimeoutError:
            return None, f"No answer within {self._rules.timeout_seconds:g} s."
        except (httpx.HTTPError, httpx.InvalidURL, OSError, TallyError) as failure:
            return None, f"{type(failure).__name__}: {failure}"
        ok = 200 <= response.status_code < 300
        return response.status_code, None if ok else f"HTTP {response.status_code}"


class _Recorder:
    """Records attempts in groups: those that end while a group is being written go in
    the next one, so a burst of deliveries costs a few commits rather than one each."""

    def __init__(self, schedule: tuple[float, ...]) -> None:
        self._schedule = schedule
        self._waiting: list[tuple[outbox.Attempt, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def record(self, attempt: outbox.Attempt) -> None:
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((attempt, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write(), name="webhook-recorder")
        await done

    async def aclose(self) -> None:
        """Let the group being written finish (the process is stopping)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _write(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                await outbox.record_attempts([a for a, _ in group], schedule=self._schedule)
            except Exception as failure:
                for _, done in group:
                    if not done.done():
                        done.set_exception(failure)
                continue
            for _, done in group:
                if not done.done():
                    done.set_result(None)
