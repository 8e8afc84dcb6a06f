"""Live balances: the stream behind `Subscription.balanceChanged`, and revoked-token watch.

A stream subscribes to the broker first and reads the balance second, so no change
can slip between the two; events up to the version it started from are dropped.
Broker events may come out of order (two requests of one process announce in the
order their tasks resume, and Redis relays processes independently), so early ones
are held up to `HOLD_SECONDS` for the missing versions. Whenever something may have
been lost (a lag marker, a version that never came) the stream re-reads the balance
and sends it with no entries: the client then holds the truth again.
See docs/live-balances.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from models import ApiToken, Message
from services import notices
from services.access import Principal
from services.billing import current_balance
from services.broadcast import BalanceEvent, Broker, Subscription
from services.clock import Clock
from services.inboxes import visible_inboxes
from services.ledger import Balance
from services.notices import RaisedNotice
from services.payments import PaymentProvider

log = logging.getLogger("tally.live")

HOLD_SECONDS = 0.2
REVOCATION_CHECK_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """An event as one viewer may see it: `hidden_messages` are of inboxes it may not use,
    `notices` those of the change's notices it may see (RULES.md, Notices)."""

    event: BalanceEvent
    hidden_messages: frozenset[int] = frozenset()
    notices: tuple[RaisedNotice, ...] = ()


class Sequencer:
    """Releases one account's events in version order, each version once.

    An event that comes before the version it follows is held until that version
    comes, or until `hold` seconds have passed; the stream then re-reads the balance.
    """

    def __init__(self, version: int, hold: float) -> None:
        self.version = version
        self._hold = hold
        self._early: dict[int, BalanceEvent] = {}
        self._deadline = 0.0

    async def next_from(self, subscription: Subscription) -> BalanceEvent | None:
        """The broker's next item; None also when a held version is overdue."""
        if not self._early:
            return await anext(subscription)
        try:
            async with asyncio.timeout_at(self._deadline):
                return await anext(subscription)
        except TimeoutError:
            return None

    def accept(self, event: BalanceEvent) -> list[BalanceEvent]:
        """The events that are now next in order (none while a version is missing)."""
        if event.balance.version > self.version:
            self._early[event.balance.version] = event
        return self._release()

    def re_read(self, balance: Balance) -> list[BalanceEvent]:
        """After a re-read: the balance (no entries) if it is news, then what was held."""
        news = []
        if balance.version > self.version:
            news.append(BalanceEvent(balance=balance, entries=()))
            self.version = balance.version
        # Held events newer than the database's version cannot be (the broker carries only
        # committed changes), but they must never stall the stream: stop waiting for the gap.
        self._early = {v: e for v, e in self._early.items() if v > self.version}
        if self._early:
            self.version = min(self._early) - 1
        return news + self._release()

    def _release(self) -> list[BalanceEvent]:
        ready = []
        while (following := self._early.pop(self.version + 1, None)) is not None:
            ready.append(following)
            self.version += 1
        if self._early and (ready or self._deadline < self._now()):
            self._deadline = self._now() + self._hold  # a new gap: wait for it afresh
        return ready

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


async def balance_changes(
    *,
    actor: Principal,
    clock: Clock,
    broker: Broker,
    provider: PaymentProvider,
    hold: float = HOLD_SECONDS,
) -> AsyncIterator[LiveEvent]:
    """The account's balance now (no entries), then every committed change in version order."""
    subscription = broker.subscribe(actor.account_id)
    try:
        balance = await current_balance(
            account_id=actor.account_id, clock=clock, broker=broker, provider=provider
        )
        yield LiveEvent(BalanceEvent(balance=balance, entries=()))
        order = Sequencer(balance.version, hold)
        while True:
            item = await order.next_from(subscription)
            if item is None:  # events may have been lost: the database has the truth
                balance = await current_balance(
                    account_id=actor.account_id, clock=clock, broker=broker, provider=provider
                )
                ready = order.re_read(balance)
            else:
                ready = order.accept(item)
            for event in ready:
                seen = await for_viewer(event, actor)
                if seen is not None:
                    yield seen
    finally:
        await subscription.aclose()


async def for_viewer(event: BalanceEvent, actor: Principal) -> LiveEvent | None:
    """The event for `actor`, or None when it has nothing `actor` may see.

    A MEMBER does not see messages of inboxes it may not use, nor the notices RULES.md
    keeps from it; a change with no entry and no notice it may see is not its event.
    """
    message_ids = {e.message_id for e in event.entries if e.message_id is not None}
    if actor.is_admin:
        return LiveEvent(event, notices=tuple(event.notices))
    if not message_ids and not event.notices:
        return LiveEvent(event)
    # Members of one account share events: look each member's view up once per event.
    key = ("member-view", actor.member_id)
    view = event.memo.get(key)
    if not isinstance(view, LiveEvent):
        usable = {inbox.id for inbox in await visible_inboxes(actor)}
        rows = await Message.filter(id__in=message_ids).values_list("id", "inbox_id")
        hidden = frozenset(m for m, inbox_id in rows if inbox_id not in usable)
        seen = tuple(n for n in event.notices if notices.visible_to(n, actor, usable))
        view = LiveEvent(event, hidden, seen)
        event.memo[key] = view
    if not event.entries and event.notices and not view.notices:
        return None
    return view


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
                try:
                    await on_revoked()
                except Exception:  # e.g. the connection closed meanwhile
                    log.debug("closing a connection of a revoked token failed", exc_info=True)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
