"""Long-lived connections of revoked tokens: found within an interval and called back.

A revoked token stops working at once for requests (they look the token up); a
websocket authenticated before the revocation is closed by this watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from models import ApiToken

log = logging.getLogger("tally.live")

REVOCATION_CHECK_SECONDS = 2.0

OnRevoked = Callable[[], Awaitable[None]]


class TokenWatch:
    """Calls back the long-lived connections whose token has been revoked.

    One query per interval for all the tokens watched in the process, whatever the
    number of connections; the task ends once nothing has been watched for an interval.
    """

    def __init__(self, interval: float = REVOCATION_CHECK_SECONDS) -> None:
        self._interval = interval
        self._watched: dict[int, list[OnRevoked]] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, token_id: int, on_revoked: OnRevoked) -> Callable[[], None]:
        """Call `on_revoked` once the token is revoked; returns the function that stops it."""
        self._watched.setdefault(token_id, []).append(on_revoked)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="token-watch")

        def stop() -> None:
            callbacks = self._watched.get(token_id, [])
            if on_revoked in callbacks:
                callbacks.remove(on_revoked)
            if not callbacks:
                self._watched.pop(token_id, None)

        return stop

    def revoked(self, token_id: int | None) -> None:
        """A revocation heard from the broker: close that token's connections now, rather
        than at the next check (None: some may have been missed; the check finds them)."""
        if token_id is None:
            return
        for on_revoked in self._watched.pop(token_id, []):
            asyncio.get_running_loop().create_task(self._call(on_revoked))

    async def _call(self, on_revoked: OnRevoked) -> None:
        try:
            await on_revoked()
        except Exception:  # e.g. the connection closed meanwhile
            log.debug("closing a connection of a revoked token failed", exc_info=True)

    async def _run(self) -> None:
        while self._watched:
            await asyncio.sleep(self._interval)
            try:
                await self._check()
            except Exception:
                log.exception("checking for revoked tokens failed; retrying")

    async def _check(self) -> None:
        watched = list(self._watched)
        rows = await ApiToken.filter(id__in=watched, revoked_at__isnull=True).values("id")
        live = {row["id"] for row in rows}
        for token_id in watched:
            if token_id in live:
                continue
            for on_revoked in self._watched.pop(token_id, []):
                await self._call(on_revoked)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
