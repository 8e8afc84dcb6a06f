from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from tortoise.transactions import in_transaction

from models import SubscriptionPeriod
from services import bulk
from services.access import Principal
from services.bulk import Row
from services.clock import FrozenClock

COLUMNS = ("account_id", "index", "starts_at", "ends_at", "granted", "expired", "applied_at")


class Abandoned(Exception):
    pass


async def periods(account_id: int) -> list[tuple[int, int, datetime]]:
    rows = await SubscriptionPeriod.filter(account_id=account_id, index__gte=1).order_by("index")
    return [(p.index, p.expired, p.starts_at) for p in rows]


async def test_streamed_rows_are_written_in_chunks_and_roll_back_with_the_transaction(
    admin: Principal, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given chunks smaller than the rows to write
    monkeypatch.setattr(bulk, "CHUNK", 3)
    start = clock.now()
    rows = (
        (admin.account_id, index, start, start + timedelta(days=1), 10, index, start)
        for index in range(1, 11)
    )
    seen: list[tuple[int, int, datetime]] = []

    async def write_then_abandon() -> None:
        async with in_transaction():
            await bulk.insert_rows("subscription_period", COLUMNS, rows)
            seen.extend(await periods(admin.account_id))
            raise Abandoned

    # when a generator's rows are inserted in a transaction that then rolls back
    with pytest.raises(Abandoned):
        await write_then_abandon()
    # then the transaction saw every row with its values, and they are gone
    assert seen == [(index, index, start) for index in range(1, 11)]
    assert await periods(admin.account_id) == []


async def test_a_generator_that_fails_aborts_the_insert_with_its_own_error(
    admin: Principal, clock: FrozenClock
) -> None:
    start = clock.now()

    def rows() -> Iterator[Row]:
        yield (admin.account_id, 1, start, start, 10, 0, start)
        raise Abandoned

    async def write() -> None:
        async with in_transaction():
            await bulk.insert_rows("subscription_period", COLUMNS, rows())

    with pytest.raises(Abandoned):
        await write()
    # and the connection goes on serving queries, without the row
    assert await periods(admin.account_id) == []
