"""Round trips of usage reports: each report reads the database as few times as it can.

Each statement costs a round trip (0.3-0.5 ms on PostgreSQL), which is most of a short
report (docs/benchmarks.md, "Usage reports"). These tests count the statements Tortoise
sends, so a report that starts reading something again fails here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import date
from typing import Any

import pytest

from models import Account, Inbox
from models.enums import InboxKind
from services.access import Principal
from services.clock import FrozenClock
from services.errors import NotFound
from services.runtime import Runtime
from services.usage import Figures, UsageGroupBy, account_usage, inbox_usage, member_usage
from tests.services.conftest import open_account, principal, receive
from tests.services.test_usage import DAY, add_member, at

pytestmark = pytest.mark.usefixtures("db")

JANUARY = (date(2026, 1, 1), date(2026, 1, 31))


# Set inside the block, so inherited by the tasks it starts and by no task started before
# (another test's server still winding down): only the block's own statements count.
_recording: ContextVar[bool] = ContextVar("recording_statements", default=False)


class _Statements(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sql: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if _recording.get():
            self.sql.append(record.getMessage())


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements the block sends, as Tortoise logs them."""
    logger = logging.getLogger("tortoise.db_client")
    handler, level = _Statements(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    token = _recording.set(True)
    try:
        yield handler.sql
    finally:
        _recording.reset(token)
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_an_account_report_given_its_account_reads_only_the_rollups(
    admin: Principal, clock: FrozenClock
) -> None:
    # given the account row, as Query.account loaded it
    account = await Account.get(id=admin.account_id)
    # when
    with statements() as sql:
        await account_usage(
            actor=admin,
            days=JANUARY,
            granularity=DAY,
            group_by=UsageGroupBy.NONE,
            clock=clock,
            account=account,
        )
    # then: one statement, the sums
    assert len(sql) == 1, sql
    assert "usage_account_day" in sql[0]


async def test_an_account_report_without_its_account_reads_it_first(
    admin: Principal, clock: FrozenClock
) -> None:
    with statements() as sql:
        report = await account_usage(
            actor=admin, days=JANUARY, granularity=DAY, group_by=UsageGroupBy.NONE, clock=clock
        )

    assert len(sql) == 2, sql
    assert report.timezone == "America/New_York"


async def test_the_account_given_must_be_the_actor_s(admin: Principal, clock: FrozenClock) -> None:
    other = await open_account(clock)

    with pytest.raises(NotFound):
        await account_usage(
            actor=admin,
            days=JANUARY,
            granularity=DAY,
            group_by=UsageGroupBy.NONE,
            clock=clock,
            account=other.account,
        )


async def test_member_groups_come_from_one_statement_with_every_personal_inbox(
    admin: Principal, clock: FrozenClock, runtime: Runtime
) -> None:
    # given: Ben with two personal inboxes, Di with none, and a shared inbox
    ben = await add_member(admin, clock, "Ben", "+14155550101")
    di = await add_member(admin, clock, "Di", None)
    second = await Inbox.create(
        account_id=admin.account_id,
        name="Ben's second",
        phone_number="+14155550109",
        kind=InboxKind.PERSONAL,
        owner_id=ben.id,
        created_at=clock.now(),
    )
    shared = await Inbox.create(
        account_id=admin.account_id,
        name="Desk",
        phone_number="+14155550108",
        kind=InboxKind.SHARED,
        created_at=clock.now(),
    )
    clock.set(at("2026-01-10T10:00"))
    await receive(runtime, await Inbox.get(owner_id=ben.id, id__not=second.id))
    await receive(runtime, second)
    await receive(runtime, shared)
    account = await Account.get(id=admin.account_id)
    # when
    with statements() as sql:
        report = await account_usage(
            actor=admin,
            days=JANUARY,
            granularity=DAY,
            group_by=UsageGroupBy.MEMBER,
            clock=clock,
            account=account,
        )
    # then: the members with their inboxes, the totals' sums, the groups' sums
    assert len(sql) == 3, sql
    assert [(g.member.id, g.totals) for g in report.groups if g.member] == [
        (admin.member_id, Figures()),
        (ben.id, Figures(0, 2, 0, 2)),
        (di.id, Figures()),
    ]
    assert report.totals == Figures(0, 3, 0, 3)


async def test_a_member_report_finds_the_member_its_calendar_and_inboxes_at_once(
    admin: Principal, clock: FrozenClock
) -> None:
    ben = await add_member(admin, clock, "Ben", "+14155550101")

    args: dict[str, Any] = {"days": JANUARY, "granularity": DAY, "clock": clock}

    with statements() as sql:
        await member_usage(actor=admin, member_id=ben.id, **args)

    assert len(sql) == 2, sql


async def test_an_inbox_report_finds_the_inbox_and_its_calendar_at_once(
    admin: Principal, clock: FrozenClock, inbox: Inbox
) -> None:
    args: dict[str, Any] = {"days": JANUARY, "granularity": DAY, "clock": clock}

    with statements() as sql:
        await inbox_usage(actor=admin, inbox_id=inbox.id, **args)

    assert len(sql) == 2, sql


async def test_members_and_inboxes_of_another_account_stay_not_found(
    admin: Principal, clock: FrozenClock
) -> None:
    # given another account's admin (a member) and inbox
    other = await open_account(clock)
    theirs = principal(other)
    their_inbox = await Inbox.create(
        account_id=theirs.account_id,
        name="Theirs",
        phone_number="+14155550107",
        kind=InboxKind.SHARED,
        created_at=clock.now(),
    )
    args: dict[str, Any] = {"days": JANUARY, "granularity": DAY, "clock": clock}
    # then
    with pytest.raises(NotFound):
        await member_usage(actor=admin, member_id=theirs.member_id, **args)
    with pytest.raises(NotFound):
        await inbox_usage(actor=admin, inbox_id=their_inbox.id, **args)
