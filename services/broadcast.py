"""Balance events: published after commit, relayed to live subscribers.

`LocalBroker` fans out inside one process. Each subscriber has a bounded queue;
only the newest balance matters to a client, so when a slow subscriber's queue is
full its oldest event is dropped and the subscriber is told it lagged (it then
re-reads the balance) instead of holding up everyone else.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.ledger import Balance, Change


@dataclass(frozen=True, slots=True)
class BalanceEvent:
    """A committed change of one account's balance, with the ids of its ledger entries."""

    balance: Balance
    entry_ids: Sequence[int]

    @property
    def account_id(self) -> int:
        return self.balance.account_id


class Broker(Protocol):
    async def publish(self, event: BalanceEvent) -> None:
        """Deliver `event` to the account's subscribers; call only after the change committed."""
        ...

    def subscribe(self, account_id: int) -> AsyncGenerator[BalanceEvent | None, None]:
        """The account's events in commit order; None means events were lost (re-read)."""
        ...


class LocalBroker:
    def __init__(self, queue_size: int = 64) -> None:
        if queue_size < 2:
            raise ValueError("a subscriber queue needs room for a lag marker and an event")
        self._queue_size = queue_size
        self._queues: defaultdict[int, set[asyncio.Queue[BalanceEvent | None]]] = defaultdict(set)

    async def publish(self, event: BalanceEvent) -> None:
        for queue in list(self._queues.get(event.account_id, ())):
            if queue.full():
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
            queue.put_nowait(event)

    async def subscribe(self, account_id: int) -> AsyncGenerator[BalanceEvent | None, None]:
        queue: asyncio.Queue[BalanceEvent | None] = asyncio.Queue(self._queue_size)
        self._queues[account_id].add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues[account_id].discard(queue)
            if not self._queues[account_id]:
                del self._queues[account_id]


async def announce(broker: Broker, change: Change) -> None:
    """Publish a committed change to the account's live subscribers."""
    await broker.publish(
        BalanceEvent(balance=change.balance, entry_ids=tuple(e.id for e in change.entries))
    )
