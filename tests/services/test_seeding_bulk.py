from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models import Message, SubscriptionPeriod
from services import bulk, sql
from services.access import Principal
from services.bulk import Row
from services.clock import FrozenClock
from services.inboxes import create_shared_inbox
from services.seeding import MESSAGE_COLUMNS
from tests.conftest import ON_POSTGRES

PLAIN = "tally_test_plain_role"
# Roles belong to the whole server: made once, kept.
PLAIN_ROLE = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PLAIN}') THEN CREATE ROLE {PLAIN}; END IF;
END $$"""

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


def message_row(account_id: int, inbox_id: int, at: datetime) -> Row:
    values = {
        "id": 10**6, "account_id": account_id, "inbox_id": inbox_id, "direction": "INBOUND",
        "from_number": "+14155550123", "to_number": "+14155550100", "body": "Hi",
        "encoding": "GSM7", "segments": 1, "credits": 1, "status": "RECEIVED",
        "sender_id": None, "provider_message_id": "SMload", "created_at": at,
    }  # fmt: skip
    return tuple(values[column] for column in MESSAGE_COLUMNS)


async def load_message(admin: Principal, inbox_id: int, clock: FrozenClock) -> None:
    async with (
        in_transaction(),
        bulk.loading(account_id=admin.account_id, tables=["message"]),
    ):
        await bulk.insert_rows(
            "message", MESSAGE_COLUMNS, [message_row(admin.account_id, inbox_id, clock.now())]
        )


async def test_a_load_is_written_when_its_references_hold(
    admin: Principal, clock: FrozenClock
) -> None:
    inbox = await create_shared_inbox(
        actor=admin, name="Desk", phone_number="+14155550100", member_ids=[], region="US",
        clock=clock,
    )  # fmt: skip
    await load_message(admin, inbox.id, clock)
    assert await Message.filter(account_id=admin.account_id).count() == 1


async def test_a_load_that_refers_to_nothing_is_refused_and_leaves_nothing(
    admin: Principal, clock: FrozenClock
) -> None:
    # when a loaded message names an inbox that does not exist, then the load is refused:
    # at the end on PostgreSQL (loaded without triggers), at once on SQLite
    expected = bulk.DanglingReference if ON_POSTGRES else IntegrityError
    with pytest.raises(expected) as refused:
        await load_message(admin, 10**9, clock)
    if ON_POSTGRES:
        assert str(refused.value) == "message.inbox_id = 1000000000 refers to no inbox"
    # and nothing of it is written
    assert await Message.filter(account_id=admin.account_id).count() == 0


@pytest.mark.skipif(not ON_POSTGRES, reason="roles and triggers are PostgreSQL's")
async def test_a_role_that_may_not_skip_triggers_loads_with_them(
    admin: Principal, clock: FrozenClock
) -> None:
    # given a role that is not a superuser, for the transaction
    conn = sql.connection()
    await sql.run(conn, PLAIN_ROLE, [])
    await sql.run(conn, f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {PLAIN}", [])

    async def load_as_plain_role() -> None:
        async with in_transaction():
            await sql.run(sql.connection(), f"SET LOCAL ROLE {PLAIN}", [])
            async with bulk.loading(account_id=admin.account_id, tables=["message"]):
                row = message_row(admin.account_id, 10**9, clock.now())
                await bulk.insert_rows("message", MESSAGE_COLUMNS, [row])
                raise AssertionError("the foreign-key trigger let the row in")

    # then the row is checked as it is written: by PostgreSQL's own trigger
    with pytest.raises(IntegrityError, match="inbox"):
        await load_as_plain_role()
