"""Importing history: checked whole first, loaded once, on the right local days, for free."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from models import Account, Inbox, LedgerEntry, Message, UsageAccountDay, UsageDay, UsageMonth
from models.enums import Direction, MessageStatus
from services import importing
from services.access import Principal
from services.accounts import NewAccount
from services.calendar import Granularity
from services.clock import FrozenClock
from services.errors import NotFound
from services.importing import ImportRejected, ImportResult, import_messages
from services.messaging import receive_message, record_delivery_status
from services.runtime import Runtime
from services.usage import UsageGroupBy, account_usage
from tests.services.conftest import INBOX_NUMBER, open_account, open_inbox, principal
from tests.services.test_usage import assert_rollups_match_messages

# The account fixture's zone is America/New_York and its clock 2026-01-15 12:00 UTC.
LATE_EVENING = "2026-01-10T23:30:00-05:00"  # 2026-01-11 04:30 UTC, still the 10th in New York


def line(**fields: Any) -> dict[str, Any]:
    base = {
        "inbox": "(415) 555-0100",
        "direction": "OUTBOUND",
        "peer": "415 555 0123",
        "body": "Hello from the old system",
        "createdAt": LATE_EVENING,
    }
    return {**base, **fields}


def write(tmp_path: Path, *items: dict[str, Any] | str) -> Path:
    path = tmp_path / "history.jsonl"
    text = "\n".join(item if isinstance(item, str) else json.dumps(item) for item in items)
    path.write_text(text + "\n", encoding="utf-8")
    return path


async def run(account: NewAccount, clock: FrozenClock, path: Path, **kw: Any) -> ImportResult:
    return await import_messages(
        account_id=account.account.id, path=path, region="US", clock=clock, **kw
    )


@pytest.fixture
async def inbox(admin: Principal, clock: FrozenClock) -> Inbox:
    return await open_inbox(admin, clock)


@pytest.mark.usefixtures("inbox")
async def test_imported_messages_land_on_their_local_day_and_take_no_credits(
    account: NewAccount, admin: Principal, clock: FrozenClock, tmp_path: Path
) -> None:
    # given an account's balance and ledger before
    before = await Account.get(id=account.account.id)
    entries = await LedgerEntry.all().count()
    path = write(
        tmp_path,
        line(providerMessageId="SM-1"),
        line(direction="INBOUND", body="Ça marche 😊", providerMessageId="SM-2"),
    )
    # when imported
    result = await run(account, clock, path)
    # then stored as history: E.164 numbers, SENT or RECEIVED, no credits, no sender
    assert result == ImportResult(imported=2, skipped=0)
    rows = await Message.all().order_by("id")
    assert [(m.direction, m.status, m.credits, m.sender_id) for m in rows] == [
        (Direction.OUTBOUND, MessageStatus.SENT, 0, None),
        (Direction.INBOUND, MessageStatus.RECEIVED, 0, None),
    ]
    assert (rows[0].from_number, rows[0].to_number) == (INBOX_NUMBER, "+14155550123")
    assert (rows[1].from_number, rows[1].to_number) == ("+14155550123", INBOX_NUMBER)
    assert rows[0].created_at == datetime(2026, 1, 11, 4, 30, tzinfo=UTC)
    # on the local day, in the usage report
    report = await account_usage(
        actor=admin,
        days=(date(2026, 1, 10), date(2026, 1, 11)),
        granularity=Granularity.DAY,
        group_by=UsageGroupBy.NONE,
        clock=clock,
    )
    assert [bucket.figures.messages for bucket in report.series] == [2, 0]
    assert report.totals.segments_received == 1
    await assert_rollups_match_messages(account.account.id, "America/New_York")
    # and the balance, its version and the ledger are as they were
    after = await Account.get(id=account.account.id)
    assert (after.subscription_credits, after.purchased_credits, after.balance_version) == (
        before.subscription_credits,
        before.purchased_credits,
        before.balance_version,
    )
    assert await LedgerEntry.all().count() == entries


BAD_LINES: dict[str, dict[str, Any] | str] = {
    "not JSON": "{nope",
    "not an object": "[1, 2]",
    "an unknown key": line(channel="sms"),
    "a missing key": {k: v for k, v in line().items() if k != "peer"},
    "a number that is not a string": line(body=5),
    "another account's inbox": line(inbox="+14155550999"),
    "a peer that is no number": line(peer="call me"),
    "an unknown direction": line(direction="SIDEWAYS"),
    "an empty body": line(body="   "),
    "a body too long": line(body="a" * 1601),
    "a date without offset": line(createdAt="2026-01-10T10:00:00"),
    "a date in the future": line(createdAt="2026-01-16T00:00:00Z"),
    "not a date": line(createdAt="yesterday"),
    "an empty carrier id": line(providerMessageId=""),
    "a carrier id too long": line(providerMessageId="x" * 129),
}


@pytest.mark.usefixtures("inbox")
@pytest.mark.parametrize("bad", list(BAD_LINES))
async def test_a_bad_line_anywhere_leaves_nothing_imported(
    account: NewAccount, clock: FrozenClock, tmp_path: Path, bad: str
) -> None:
    # given a good line, a blank one, another good one, then the bad one on line 4
    path = write(tmp_path, line(), "  ", line(), BAD_LINES[bad], line())
    with pytest.raises(ImportRejected) as rejected:
        await run(account, clock, path)
    assert [problem.line for problem in rejected.value.problems] == [4]
    assert await Message.all().count() == 0
    assert await UsageDay.all().count() == 0


@pytest.mark.usefixtures("inbox")
async def test_every_bad_line_is_reported_up_to_a_limit(
    account: NewAccount, clock: FrozenClock, tmp_path: Path
) -> None:
    path = write(tmp_path, *([line(direction="UP")] * 30))
    with pytest.raises(ImportRejected) as rejected:
        await run(account, clock, path)
    assert rejected.value.total == 30
    assert [p.line for p in rejected.value.problems] == list(range(1, 21))
    assert rejected.value.problems[0].reason == "direction: must be OUTBOUND or INBOUND"


@pytest.mark.usefixtures("inbox")
async def test_a_re_run_imports_nothing_twice_and_repeats_in_the_file_are_skipped(
    account: NewAccount, clock: FrozenClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given chunks of two lines, so that a repeat and its first are in different chunks
    monkeypatch.setattr(importing, "CHUNK", 2)
    ids = ["A", "B", "A", None, "C", "B"]
    path = write(tmp_path, *(line(providerMessageId=i) for i in ids))
    # when imported twice
    first = await run(account, clock, path)
    second = await run(account, clock, path)
    # then each id once; a line without an id on every run
    assert first == ImportResult(imported=4, skipped=2)
    assert second == ImportResult(imported=1, skipped=5)
    stored: list[str | None] = [m.provider_message_id for m in await Message.all()]
    assert sorted(stored, key=lambda i: (i is None, i or "")) == ["A", "B", "C", None, None]
    await assert_rollups_match_messages(account.account.id, "America/New_York")


@pytest.mark.usefixtures("inbox")
async def test_a_dry_run_counts_what_a_run_would_do_and_writes_nothing(
    account: NewAccount, clock: FrozenClock, tmp_path: Path
) -> None:
    await run(account, clock, write(tmp_path, line(providerMessageId="A")))
    path = write(tmp_path, line(providerMessageId="A"), line(providerMessageId="B"), line())
    assert await run(account, clock, path, dry_run=True) == ImportResult(imported=2, skipped=1)
    assert await Message.all().count() == 1
    assert await UsageMonth.all().count() == 1
    assert await UsageAccountDay.all().count() == 1


async def test_an_unknown_account_is_not_found(clock: FrozenClock, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        await import_messages(
            account_id=999, path=write(tmp_path, line()), region="US", clock=clock
        )


async def test_carrier_ids_are_unique_per_account_not_per_deployment(
    account: NewAccount, admin: Principal, runtime: Runtime, clock: FrozenClock, tmp_path: Path
) -> None:
    # given an imported message with id SM-9 in one account
    await open_inbox(admin, clock)
    await run(account, clock, write(tmp_path, line(providerMessageId="SM-9")))
    # when another account receives a message with the same carrier id
    other = await open_account(clock, email="o@other.example")
    await open_inbox(principal(other), clock, number="+14155550177")
    received = await receive_message(
        runtime=runtime,
        from_number="+14155550123",
        to_number="+14155550177",
        body="Hi",
        provider_message_id="SM-9",
        region="US",
    )
    # then it is a message of its own, charged; to the importing account it is a duplicate
    assert not received.duplicate
    again = await receive_message(
        runtime=runtime,
        from_number="+14155550123",
        to_number=INBOX_NUMBER,
        body="Hi",
        provider_message_id="SM-9",
        region="US",
    )
    assert again.duplicate
    assert again.message.account_id == account.account.id
    assert await Message.filter(provider_message_id="SM-9").count() == 2


@pytest.mark.usefixtures("inbox")
async def test_delivery_reports_never_apply_to_imported_messages(
    account: NewAccount, runtime: Runtime, clock: FrozenClock, tmp_path: Path
) -> None:
    await run(account, clock, write(tmp_path, line(providerMessageId="SM-old")))
    with pytest.raises(NotFound):
        await record_delivery_status(runtime=runtime, provider_message_id="SM-old", delivered=False)
    message = await Message.get(provider_message_id="SM-old")
    assert (message.status, message.refunded_at) == (MessageStatus.SENT, None)


@pytest.mark.usefixtures("inbox")
async def test_imported_history_paces_the_forecast(
    account: NewAccount, admin: Principal, runtime: Runtime, clock: FrozenClock, tmp_path: Path
) -> None:
    from services.forecast import account_forecast

    now = clock.now()
    days = [now - timedelta(days=n) for n in range(1, 11)]
    path = write(tmp_path, *(line(createdAt=d.isoformat(), body="a" * 306) for d in days))
    await run(account, clock, path)
    row = await Account.get(id=account.account.id)
    result = await account_forecast(runtime=runtime, actor=admin, account=row)
    # 10 messages of 2 segments over the 10 days since the first
    assert (result.based_on_days, result.daily_burn) == (10, Fraction(2))
