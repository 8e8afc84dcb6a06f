from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from models import LedgerEntry
from models.enums import CreditBucket, LedgerEntryKind
from services.balance import Balance
from services.broadcast import (
    BalanceEvent,
    LocalBroker,
    RedisBroker,
    event_from_json,
    event_to_json,
)

# Ledger entries are Tortoise models, which need the ORM set up even unsaved.
pytestmark = pytest.mark.usefixtures("database")

NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)
REDIS_URL = os.environ.get("TALLY_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="set TALLY_TEST_REDIS_URL (as .ci/run does) to test against Redis"
)


def event(account_id: int, version: int) -> BalanceEvent:
    balance = Balance(account_id, 10 * version, 5, NOW, NOW.replace(month=2), version)
    entry = LedgerEntry(
        id=version,
        account_id=account_id,
        kind=LedgerEntryKind.PURCHASE,
        bucket=CreditBucket.PURCHASED,
        credits=100,
        balance_after=balance.total,
        amount_cents=200,
        message_id=None,
        period_index=0,
        created_at=NOW,
    )
    return BalanceEvent(balance=balance, entries=(entry,))


async def next_of(events: AsyncIterator[BalanceEvent | None]) -> BalanceEvent | None:
    return await asyncio.wait_for(anext(events), 2)


async def test_an_event_survives_its_json_round_trip() -> None:
    original = event(7, 3)
    copy = event_from_json(event_to_json(original))
    assert copy.balance == original.balance
    [entry] = copy.entries
    assert (entry.id, entry.kind, entry.bucket, entry.amount_cents, entry.created_at) == (
        3,
        LedgerEntryKind.PURCHASE,
        CreditBucket.PURCHASED,
        200,
        NOW,
    )


async def test_local_subscribers_see_only_their_account_in_order() -> None:
    broker = LocalBroker()
    mine, theirs = broker.subscribe(1), broker.subscribe(2)
    first, other = asyncio.ensure_future(next_of(mine)), asyncio.ensure_future(next_of(theirs))
    await asyncio.sleep(0)
    await broker.publish(event(1, 1))
    await broker.publish(event(1, 2))
    await broker.publish(event(2, 1))
    assert (await first).balance.version == 1  # type: ignore[union-attr]
    assert (await next_of(mine)).balance.version == 2  # type: ignore[union-attr]
    assert (await other).account_id == 2  # type: ignore[union-attr]
    await mine.aclose()
    await theirs.aclose()


async def test_a_slow_subscriber_gets_a_lag_marker_and_the_newest_event() -> None:
    broker = LocalBroker(queue_size=4)
    slow = broker.subscribe(1)
    started = asyncio.ensure_future(next_of(slow))
    await asyncio.sleep(0)
    for version in range(1, 20):
        await broker.publish(event(1, version))
    received = [await started]
    while (item := await next_of(slow)) is None or item.balance.version < 19:
        received.append(item)
    assert None in received
    assert len(received) < 10
    await slow.aclose()


@pytest.fixture
async def redis_brokers() -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    assert REDIS_URL
    one, two = RedisBroker(REDIS_URL), RedisBroker(REDIS_URL)
    for broker in (one, two):
        await broker.start()
        await asyncio.wait_for(broker.connected.wait(), 5)
    yield one, two
    for broker in (one, two):
        await broker.stop()


@needs_redis
async def test_an_event_published_by_one_process_reaches_another(
    redis_brokers: tuple[RedisBroker, RedisBroker],
) -> None:
    publisher, listener = redis_brokers
    events = listener.subscribe(4242)
    pending = asyncio.ensure_future(next_of(events))
    await asyncio.sleep(0.05)
    await publisher.publish(event(4242, 1))
    received = await pending
    assert received is not None
    assert received.balance.version == 1
    assert received.entry_ids == (1,)
    await events.aclose()


@needs_redis
async def test_after_a_redis_disconnect_subscribers_are_told_to_re_read(
    redis_brokers: tuple[RedisBroker, RedisBroker],
) -> None:
    publisher, listener = redis_brokers
    events = listener.subscribe(4343)
    pending = asyncio.ensure_future(next_of(events))
    await asyncio.sleep(0.05)
    # when Redis drops every pub/sub connection (as a restart does)
    assert REDIS_URL
    admin = aioredis.from_url(REDIS_URL)
    await admin.client_kill_filter(_type="pubsub")
    await admin.aclose()
    # then the subscriber is told it may have missed events, and later events arrive again
    assert await asyncio.wait_for(pending, 10) is None
    await asyncio.wait_for(listener.connected.wait(), 10)
    await publisher.publish(event(4343, 2))
    received = await next_of(events)
    assert received is not None
    assert received.balance.version == 2
    await events.aclose()


@needs_redis
async def test_deployments_in_other_namespaces_do_not_hear_each_other(
    redis_brokers: tuple[RedisBroker, RedisBroker],
) -> None:
    # given production's two processes, and a staging process on the same Redis
    publisher, listener = redis_brokers
    staging = RedisBroker(REDIS_URL or "", namespace="staging")
    await staging.start()
    await asyncio.wait_for(staging.connected.wait(), 5)
    events = listener.subscribe(4545)
    pending = asyncio.ensure_future(next_of(events))
    await asyncio.sleep(0.05)
    # when staging's account 4545 changes, then production's
    await staging.publish(event(4545, 1))
    await publisher.publish(event(4545, 2))
    # then production hears only its own
    received = await pending
    assert received is not None
    assert received.balance.version == 2
    await events.aclose()
    await staging.stop()
