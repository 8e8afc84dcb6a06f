"""Live balances: the stream behind `Subscription.balanceChanged`.

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
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models import Message
from services import notices
from services.access import Principal
from services.balance import Balance
from services.billing import current_balance
from services.broadcast import BalanceEvent, Subscription
from services.inboxes import visible_inboxes
from services.notices import RaisedNotice

if TYPE_CHECKING:
    from services.runtime import Runtime

log = logging.getLogger("tally.live")

HOLD_SECONDS = 0.2


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
    *, runtime: Runtime, actor: Principal, hold: float = HOLD_SECONDS
) -> AsyncIterator[LiveEvent]:
    """The account's balance now (no entries), then every committed change in version order."""
    subscription = runtime.broker.subscribe(actor.account_id)
    usable = UsableInboxes(actor)
    try:
        balance = await current_balance(runtime=runtime, account_id=actor.account_id)
        yield LiveEvent(BalanceEvent(balance=balance, entries=()))
        order = Sequencer(balance.version, hold)
        while True:
            item = await order.next_from(subscription)
            if item is None:  # events may have been lost: the database has the truth
                balance = await current_balance(runtime=runtime, account_id=actor.account_id)
                ready = order.re_read(balance)
            else:
                ready = order.accept(item)
            for event in ready:
                seen = await for_viewer(event, actor, usable)
                if seen is not None:
                    yield seen
    finally:
        await subscription.aclose()


async def for_viewer(
    event: BalanceEvent, actor: Principal, usable: UsableInboxes
) -> LiveEvent | None:
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
        inboxes = await _message_inboxes(event, message_ids)
        needed = {*inboxes.values(), *(n.inbox_id for n in event.notices if n.inbox_id)}
        may_use = await usable.covering(needed)
        hidden = frozenset(m for m, inbox_id in inboxes.items() if inbox_id not in may_use)
        seen = tuple(n for n in event.notices if notices.visible_to(n, actor, may_use))
        view = LiveEvent(event, hidden, seen)
        event.memo[key] = view
    if not event.entries and event.notices and not view.notices:
        return None
    return view


async def _message_inboxes(event: BalanceEvent, message_ids: set[int]) -> dict[int, int]:
    """The inbox of each message of the event: read once per event, for every member."""
    found = event.memo.get("message-inboxes")
    if not isinstance(found, dict):
        rows = await Message.filter(id__in=message_ids).values_list("id", "inbox_id")
        found = event.memo["message-inboxes"] = dict(rows)
    return found


class UsableInboxes:
    """The inboxes a subscription's member may use, as last read.

    What a member may use only ever grows (inboxes are created with their members, and
    nothing takes access away), so a set that holds every inbox an event names answers
    for it; one that does not is read anew. One per subscription: its member is fixed.
    """

    def __init__(self, actor: Principal) -> None:
        self._actor = actor
        self._known: frozenset[int] | None = None

    async def covering(self, needed: set[int]) -> frozenset[int]:
        if self._known is None or not needed <= self._known:
            self._known = frozenset(inbox.id for inbox in await visible_inboxes(self._actor))
        return self._known
