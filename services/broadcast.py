"""Balance events: published after commit, relayed to live subscribers.

`LocalBroker` fans out inside one process. `RedisBroker` publishes through Redis
pub/sub so that a change committed by any process reaches the subscribers of
every process (several `tally serve` workers or hosts).

Each subscriber has a bounded queue. Only the newest balance matters to a client,
so when a slow subscriber's queue is full its backlog is dropped and it receives
`None`, meaning "events were lost: re-read the balance", instead of holding up the
others. Redis pub/sub is at-most-once, so after a reconnect every subscriber also
receives `None`.

Brokers also carry token revocations, so that every process stops honouring a
revoked token it had cached (services/token_cache.py) at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from models import LedgerEntry
from models.enums import CreditBucket, LedgerEntryKind
from services.balance import Balance, Change, balance_from_json, balance_to_json
from services.notices import RaisedNotice

log = logging.getLogger("tally.broadcast")

CHANNEL_PREFIX = "tally:balance:"
REVOKED_CHANNEL = "tally:revoked"
RECONNECT_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True, slots=True)
class BalanceEvent:
    """A committed change of one account's balance, with its ledger entries in order."""

    balance: Balance
    entries: Sequence[LedgerEntry]
    # The notices the change raised, in the order raised (services/notices.py).
    notices: Sequence[RaisedNotice] = ()
    # The broker hands this same object to every subscriber of the process, so what is
    # derived from it (the GraphQL payload, what a member may see) is built once, here.
    memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False, hash=False)

    @property
    def account_id(self) -> int:
        return self.balance.account_id

    @property
    def entry_ids(self) -> tuple[int, ...]:
        return tuple(entry.id for entry in self.entries)


RevocationListener = Callable[[int | None], None]


class Broker(Protocol):
    async def start(self) -> None:
        """Connect (a server process calls it once, before serving)."""
        ...

    async def stop(self) -> None:
        """Disconnect (after the last connection closed)."""
        ...

    async def publish(self, event: BalanceEvent) -> None:
        """Deliver `event` to the account's subscribers; call only after the change committed."""
        ...

    def subscribe(self, account_id: int) -> Subscription:
        """Start receiving the account's events now (before reading the balance to start from)."""
        ...

    async def publish_revocation(self, token_id: int) -> None:
        """Tell every process that a token was revoked (after the revocation committed)."""
        ...

    def on_revocation(self, listener: RevocationListener) -> None:
        """Call `listener` with each revoked token's id, or None when some may have been missed."""
        ...


class Subscription:
    """One subscriber's queue of events: iterate it, and `aclose()` it when done.

    The queue is registered when the subscription is made, not when it is first
    read, so a subscriber that then reads the current balance misses nothing.
    """

    def __init__(self, queues: set[asyncio.Queue[BalanceEvent | None]], size: int) -> None:
        self._queues = queues
        self._queue: asyncio.Queue[BalanceEvent | None] = asyncio.Queue(size)
        queues.add(self._queue)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> BalanceEvent | None:
        return await self._queue.get()

    async def aclose(self) -> None:
        self._queues.discard(self._queue)


class LocalBroker:
    def __init__(self, queue_size: int = 64) -> None:
        if queue_size < 2:
            raise ValueError("a subscriber queue needs room for a lag marker and an event")
        self._queue_size = queue_size
        self._queues: defaultdict[int, set[asyncio.Queue[BalanceEvent | None]]] = defaultdict(set)
        self._revocation_listeners: list[RevocationListener] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def publish(self, event: BalanceEvent) -> None:
        self.deliver(event.account_id, event)

    def deliver(self, account_id: int, event: BalanceEvent | None) -> None:
        """Queue `event` (or a lag marker) for every subscriber of the account, never blocking."""
        queues = self._queues.get(account_id)
        if not queues:
            self._queues.pop(account_id, None)
            return
        for queue in list(queues):
            if queue.full():
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
            queue.put_nowait(event)

    def lag_everyone(self) -> None:
        """Tell every subscriber that events may have been lost."""
        for account_id in list(self._queues):
            self.deliver(account_id, None)

    def subscribe(self, account_id: int) -> Subscription:
        return Subscription(self._queues[account_id], self._queue_size)

    async def publish_revocation(self, token_id: int) -> None:
        self.revoked(token_id)

    def on_revocation(self, listener: RevocationListener) -> None:
        self._revocation_listeners.append(listener)

    def revoked(self, token_id: int | None) -> None:
        for listener in self._revocation_listeners:
            listener(token_id)


def event_to_json(event: BalanceEvent) -> str:
    return json.dumps(
        {
            "balance": balance_to_json(event.balance),
            "entries": [_entry_to_json(entry) for entry in event.entries],
            "notices": [notice.to_json() for notice in event.notices],
        }
    )


def event_from_json(data: str | bytes) -> BalanceEvent:
    payload = json.loads(data)
    return BalanceEvent(
        balance=balance_from_json(payload["balance"]),
        entries=tuple(_entry_from_json(entry) for entry in payload["entries"]),
        notices=tuple(RaisedNotice.from_json(n) for n in payload.get("notices", ())),
    )


_ENTRY_FIELDS = (
    *("id", "account_id", "kind", "bucket", "credits", "balance_after"),
    *("amount_cents", "message_id", "period_index"),
)


def _entry_to_json(entry: LedgerEntry) -> dict[str, Any]:
    fields = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
    return {**fields, "created_at": entry.created_at.isoformat()}


def _entry_from_json(data: dict[str, Any]) -> LedgerEntry:
    # An unsaved model instance: the schema maps it like a row, and no subscriber queries the DB.
    fields = {name: data[name] for name in _ENTRY_FIELDS}
    fields["kind"] = LedgerEntryKind(data["kind"])
    fields["bucket"] = CreditBucket(data["bucket"])
    return LedgerEntry(**fields, created_at=datetime.fromisoformat(data["created_at"]))


class RedisBroker:
    """Publish through Redis; one pattern subscription per process feeds the local fan-out."""

    def __init__(self, url: str, queue_size: int = 64, *, namespace: str = "") -> None:
        # Deployments sharing one Redis (staging beside production) must not hear each
        # other's accounts: each names its channels with its own namespace.
        self._prefix = f"tally:{namespace}:balance:" if namespace else CHANNEL_PREFIX
        self._revocations = f"tally:{namespace}:revoked" if namespace else REVOKED_CHANNEL
        # No automatic retries: redis-py would silently reconnect the pub/sub connection and
        # hide the messages lost meanwhile, which the lag marker exists to reveal. A publish
        # is on a mutation's path, so connecting gives up after 2 s.
        self._redis = aioredis.from_url(
            url, health_check_interval=10, socket_connect_timeout=2, socket_timeout=5
        )
        self._local = LocalBroker(queue_size)
        self._listener: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="redis-broker")

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()

    async def publish(self, event: BalanceEvent) -> None:
        channel, message = f"{self._prefix}{event.account_id}", event_to_json(event)
        # Twice: the first command after a Redis restart meets a pooled connection that died.
        for attempt in range(2):
            try:
                await self._redis.publish(channel, message)
                return
            except (RedisError, OSError):
                if attempt:
                    # The change is committed; subscribers here still learn of it, and other
                    # processes re-read balances when their own connection comes back.
                    log.warning("could not publish a balance event to Redis", exc_info=True)
                    self._local.deliver(event.account_id, event)

    def subscribe(self, account_id: int) -> Subscription:
        return self._local.subscribe(account_id)

    async def publish_revocation(self, token_id: int) -> None:
        # This process at once; the others through Redis, or, if it cannot be reached, when
        # their own connection is lost and they forget every token (`_listen`).
        self._local.revoked(token_id)
        try:
            await self._redis.publish(self._revocations, str(token_id))
        except (RedisError, OSError):
            log.warning("could not publish a token revocation to Redis", exc_info=True)

    def on_revocation(self, listener: RevocationListener) -> None:
        self._local.on_revocation(listener)

    async def _listen(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(f"{self._prefix}*")
                    await pubsub.subscribe(self._revocations)
                    if attempt:
                        self._local.lag_everyone()
                        self._local.revoked(None)
                    attempt = 0
                    self.connected.set()
                    await self._relay(pubsub)
            except (RedisError, OSError):
                self.connected.clear()
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                log.warning("Redis pub/sub connection lost; reconnecting in %s s", delay)
                await asyncio.sleep(delay)

    async def _relay(self, pubsub: aioredis.client.PubSub) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message["type"] == "message":
                self._local.revoked(_token_id(message["data"]))
            if message is None or message["type"] != "pmessage":
                continue
            try:
                event = event_from_json(message["data"])
            except (ValueError, KeyError, TypeError):
                log.warning("dropped a malformed balance event from Redis")
                continue
            self._local.deliver(event.account_id, event)


def _token_id(data: bytes | str) -> int | None:
    """A revoked token's id from Redis; None (forget every token) for anything else."""
    try:
        return int(data)
    except ValueError:
        return None


async def announce(broker: Broker, change: Change) -> None:
    """Publish a committed change to the account's live subscribers."""
    event = BalanceEvent(
        balance=change.balance, entries=tuple(change.entries), notices=tuple(change.notices)
    )
    await broker.publish(event)
