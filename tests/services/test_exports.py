"""Usage exports: signed URLs, expiry, and the CSV file for every grouping."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from models import Account, Inbox, Member, UsageExport
from models.enums import Role, WeekStart
from services.access import Principal
from services.accounts import update_account
from services.calendar import Granularity
from services.clock import FrozenClock
from services.errors import Forbidden, InvalidValue, NotFound
from services.exports import (
    HEADER,
    BadSignature,
    CreatedExport,
    ExportExpired,
    ExportFormat,
    ExportRow,
    create_export,
    csv_lines,
    export_url,
    guard_formula,
    open_export,
    sign_export,
    verify_export,
)
from services.inboxes import create_shared_inbox
from services.members import create_member
from services.runtime import Runtime
from services.tokens import revoke_token
from services.usage import Figures, UsageGroupBy, account_usage
from tests.services.conftest import REGION, body_of, receive, send

SECRET = "test-secret"
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
WEEK = (date(2026, 1, 1), date(2026, 1, 7))
HEADER_LINE = (
    "period_start,period_end,group_type,group_id,group_name,segments,segments_sent,"
    "segments_received,messages,messages_sent,messages_received\r\n"
)


def at(local: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=NEW_YORK)


def url_parts(url: str) -> tuple[str, str, str]:
    """(id, expires, signature) of an export URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    export_id = parts.path.removeprefix("/exports/").removesuffix(".csv")
    return export_id, query["expires"][0], query["signature"][0]


# Signing (no database)


def test_a_signed_url_verifies_until_it_expires() -> None:
    # given
    url = export_url(42, NOW, public_url="https://tally.example", secret=SECRET)
    export_id, expires, signature = url_parts(url)
    # then
    assert url.startswith("https://tally.example/exports/42.csv?expires=")
    assert expires == str(int(NOW.timestamp()))
    assert signature == sign_export(42, expires, secret=SECRET)
    earlier = NOW - timedelta(seconds=1)
    assert verify_export(export_id, expires, signature, secret=SECRET, now=earlier) == 42
    assert verify_export(export_id, expires, signature.upper(), secret=SECRET, now=earlier) == 42
    with pytest.raises(ExportExpired):
        verify_export(export_id, expires, signature, secret=SECRET, now=NOW)


@pytest.mark.parametrize(
    ("export_id", "expires", "signature"),
    [
        ("43", None, None),  # another id
        ("042", None, None),  # the same number, written otherwise
        ("x", None, None),
        ("42", "9999999999", None),  # a later expiry
        ("42", "+1768478400", None),
        ("42", None, "0" * 64),
        ("42", None, ""),
        ("42", "", None),
        ("42", None, "é" * 64),
    ],
)
def test_a_tampered_url_is_refused_before_its_expiry_is_looked_at(
    export_id: str, expires: str | None, signature: str | None
) -> None:
    # given: a URL that expired long ago, one part changed
    _, good_expires, good_signature = url_parts(export_url(42, NOW, public_url="", secret=SECRET))
    # then
    with pytest.raises(BadSignature):
        verify_export(
            export_id,
            good_expires if expires is None else expires,
            good_signature if signature is None else signature,
            secret=SECRET,
            now=NOW + timedelta(days=1),
        )


def test_a_missing_part_or_another_key_is_refused() -> None:
    _, expires, signature = url_parts(export_url(42, NOW, public_url="", secret=SECRET))
    earlier = NOW - timedelta(minutes=1)
    for given in [(None, signature), (expires, None)]:
        with pytest.raises(BadSignature):
            verify_export("42", *given, secret=SECRET, now=earlier)
    with pytest.raises(BadSignature):
        verify_export("42", expires, signature, secret="another-secret", now=earlier)


# CSV (no database)


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("=SUM(A1:A9)", "'=SUM(A1:A9)"),
        ("+1 415", "'+1 415"),
        ("-2", "'-2"),
        ("@cmd", "'@cmd"),
        ("\tTab", "'\tTab"),
        ("\rCR", "'\rCR"),
        ("Ann = boss", "Ann = boss"),
        ("'quoted", "'quoted"),
        ("", ""),
    ],
)
def test_names_a_spreadsheet_would_run_as_formulas_are_prefixed(name: str, written: str) -> None:
    assert guard_formula(name) == written


def row(name: str, group_id: int = 7) -> ExportRow:
    return ExportRow(
        date(2026, 1, 5), date(2026, 1, 11), "member", group_id, name, Figures(3, 1, 2, 1)
    )


def test_csv_quotes_commas_quotes_newlines_and_keeps_unicode() -> None:
    # given
    names = ['Ann "Boss", Jr.', "Two\nlines", "Zoë 📱", "=1+1"]
    # when
    lines = list(csv_lines(row(name) for name in names))
    # then: exact bytes, RFC 4180, CRLF between records
    assert lines[0] == HEADER_LINE == ",".join(HEADER) + "\r\n"
    assert lines[1:] == [
        '2026-01-05,2026-01-11,member,7,"Ann ""Boss"", Jr.",4,3,1,3,2,1\r\n',
        '2026-01-05,2026-01-11,member,7,"Two\nlines",4,3,1,3,2,1\r\n',
        "2026-01-05,2026-01-11,member,7,Zoë 📱,4,3,1,3,2,1\r\n",
        "2026-01-05,2026-01-11,member,7,'=1+1,4,3,1,3,2,1\r\n",
    ]
    data = "".join(lines).encode()
    assert data.decode("utf-8") == "".join(lines)
    parsed = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert parsed[0] == list(HEADER)
    assert [r[4] for r in parsed[1:]] == ['Ann "Boss", Jr.', "Two\nlines", "Zoë 📱", "'=1+1"]
    assert all(len(r) == len(HEADER) for r in parsed)


def test_csv_lines_are_made_one_at_a_time() -> None:
    made: list[int] = []

    def rows() -> Iterator[ExportRow]:
        for i in range(3):
            made.append(i)
            yield row("n", i)

    lines = csv_lines(rows())
    assert next(lines) == HEADER_LINE
    assert made == []
    next(lines)
    assert made == [0]


# Creating and opening exports (database)


@dataclass
class Team:
    admin: Principal
    ben: Member
    personal: Inbox
    shared: Inbox


@pytest.fixture
async def team(admin: Principal, clock: FrozenClock, runtime: Runtime) -> Team:
    """Ben (personal inbox) and a shared inbox, with messages on Jan 5 and Jan 14."""
    ben = await create_member(
        actor=admin,
        name='Ben "B", Jr., Sales',
        email="ben@acme.example",
        role=Role.MEMBER,
        personal_phone_number="+14155550101",
        region=REGION,
        clock=clock,
    )
    shared = await create_shared_inbox(
        actor=admin,
        name='=HYPERLINK("http://evil")',
        phone_number="+14155550100",
        member_ids=[],
        region=REGION,
        clock=clock,
    )
    personal = await Inbox.get(owner_id=ben.id)
    clock.set(at("2026-01-05T09:00"))
    await send(runtime, admin, personal, body_of(2))
    await receive(runtime, shared)
    clock.set(at("2026-01-14T23:30"))
    await receive(runtime, personal)
    clock.set(at("2026-01-15T07:00"))
    return Team(admin, ben, personal, shared)


async def export(
    actor: Principal,
    clock: FrozenClock,
    *,
    days: tuple[date, date] | None = WEEK,
    granularity: Granularity = Granularity.DAY,
    group_by: UsageGroupBy = UsageGroupBy.NONE,
) -> CreatedExport:
    return await create_export(
        actor=actor,
        days=days,
        granularity=granularity,
        group_by=group_by,
        format=ExportFormat.CSV,
        clock=clock,
        public_url="http://tally.test",
        secret=SECRET,
    )


async def download(created: CreatedExport, clock: FrozenClock) -> tuple[str, list[list[str]]]:
    """The file's name and its records (header first), as Python's csv module reads them."""
    export_id, expires, signature = url_parts(created.url)
    file = await open_export(
        export_id=export_id, expires=expires, signature=signature, secret=SECRET, clock=clock
    )
    text = "".join(file.lines)
    return file.filename, list(csv.reader(io.StringIO(text, newline="")))


def figures_of(record: list[str]) -> list[int]:
    return [int(cell) for cell in record[5:]]


def as_cells(figures: Figures) -> list[int]:
    return [
        figures.segments,
        figures.segments_sent,
        figures.segments_received,
        figures.messages,
        figures.messages_sent,
        figures.messages_received,
    ]


@pytest.mark.usefixtures("db")
async def test_an_ungrouped_export_has_one_account_row_per_bucket(
    team: Team, clock: FrozenClock
) -> None:
    # when
    created = await export(team.admin, clock)
    filename, records = await download(created, clock)
    # then
    account = await Account.get(id=team.admin.account_id)
    assert filename == "tally-usage-2026-01-01-2026-01-07.csv"
    assert records[0] == list(HEADER)
    assert created.rows == len(records) - 1 == 7
    assert [r[:5] for r in records[1:3]] == [
        ["2026-01-01", "2026-01-01", "account", str(account.id), "Acme"],
        ["2026-01-02", "2026-01-02", "account", str(account.id), "Acme"],
    ]
    assert figures_of(records[5]) == [3, 2, 1, 2, 1, 1]  # Jan 5
    assert sum(sum(figures_of(r)) for r in records[1:]) == sum(figures_of(records[5]))
    stored = await UsageExport.get(id=created.id)
    assert (stored.first_day, stored.last_day, stored.row_count) == (*WEEK, 7)
    assert (stored.granularity, stored.group_by, stored.format) == ("DAY", "NONE", "CSV")
    assert stored.expires_at == created.expires_at == clock.now() + timedelta(minutes=15)


@pytest.mark.usefixtures("db")
@pytest.mark.parametrize("granularity", list(Granularity))
@pytest.mark.parametrize("group_by", [UsageGroupBy.MEMBER, UsageGroupBy.SHARED_INBOX])
async def test_grouped_exports_have_a_row_per_bucket_and_group_and_no_account_rows(
    team: Team, clock: FrozenClock, granularity: Granularity, group_by: UsageGroupBy
) -> None:
    # given
    days = (date(2026, 1, 1), date(2026, 1, 31))
    report = await account_usage(
        actor=team.admin, days=days, granularity=granularity, group_by=group_by, clock=clock
    )
    # when
    created = await export(team.admin, clock, days=days, granularity=granularity, group_by=group_by)
    _, records = await download(created, clock)
    # then: bucket by bucket, each group in the report's order, every figure the report's
    expected = [
        [
            bucket.start.isoformat(),
            bucket.end.isoformat(),
            "member" if group.member else "shared_inbox",
            str((group.member or group.inbox).id),  # type: ignore[union-attr]
            *as_cells(group.series[index].figures),
        ]
        for index, bucket in enumerate(report.series)
        for group in report.groups
    ]
    assert [r[:4] + r[5:] for r in records[1:]] == [[*e[:4], *map(str, e[4:])] for e in expected]
    assert created.rows == len(records) - 1 == len(report.series) * len(report.groups)
    assert "account" not in {r[2] for r in records[1:]}
    names = {r[4] for r in records[1:]}
    if group_by is UsageGroupBy.MEMBER:
        assert names == {"Ada", 'Ben "B", Jr., Sales'}
    else:
        assert names == {'\'=HYPERLINK("http://evil")'}


@pytest.mark.usefixtures("db")
async def test_names_are_quoted_and_guarded_in_the_exact_bytes(
    team: Team, clock: FrozenClock
) -> None:
    created = await export(
        team.admin, clock, granularity=Granularity.ALL, group_by=UsageGroupBy.MEMBER
    )
    export_id, expires, signature = url_parts(created.url)
    file = await open_export(
        export_id=export_id, expires=expires, signature=signature, secret=SECRET, clock=clock
    )
    data = "".join(file.lines).encode("utf-8")
    assert (
        data
        == (
            HEADER_LINE
            + f"2026-01-01,2026-01-07,member,{team.admin.member_id},Ada,0,0,0,0,0,0\r\n"
            + f'2026-01-01,2026-01-07,member,{team.ben.id},"Ben ""B"", Jr., Sales",2,2,0,1,1,0\r\n'
        ).encode()
    )


@pytest.mark.usefixtures("db")
async def test_no_range_is_all_time_resolved_when_the_export_is_made(
    team: Team, clock: FrozenClock
) -> None:
    # given: it is 23:55 on Jan 15 in New York
    clock.set(at("2026-01-15T23:55"))
    # when
    created = await export(team.admin, clock, days=None)
    clock.advance(timedelta(minutes=10))
    _, records = await download(created, clock)
    # then: Jan 5 (first usage) to Jan 15, though the download runs on Jan 16
    stored = await UsageExport.get(id=created.id)
    assert (stored.first_day, stored.last_day) == (date(2026, 1, 5), date(2026, 1, 15))
    assert created.rows == len(records) - 1 == 11
    assert (records[1][0], records[-1][0]) == ("2026-01-05", "2026-01-15")


@pytest.mark.usefixtures("db")
async def test_a_shared_inbox_export_without_shared_inboxes_is_the_header_alone(
    admin: Principal, clock: FrozenClock
) -> None:
    created = await export(admin, clock, group_by=UsageGroupBy.SHARED_INBOX)
    _, records = await download(created, clock)
    assert created.rows == 0
    assert records == [list(HEADER)]


@pytest.mark.usefixtures("db")
async def test_groups_made_after_the_export_are_left_out(team: Team, clock: FrozenClock) -> None:
    # given
    created = await export(team.admin, clock, group_by=UsageGroupBy.MEMBER)
    # when
    await create_member(
        actor=team.admin,
        name="Cy",
        email="cy@acme.example",
        role=Role.MEMBER,
        personal_phone_number=None,
        region=REGION,
        clock=clock,
    )
    _, records = await download(created, clock)
    # then
    assert created.rows == len(records) - 1 == 14
    assert "Cy" not in {r[4] for r in records}


@pytest.mark.usefixtures("db")
@pytest.mark.parametrize(
    ("days", "granularity"),
    [
        ((date(2026, 1, 7), date(2026, 1, 1)), Granularity.DAY),
        ((date(2000, 1, 1), date(2026, 1, 1)), Granularity.DAY),
        ((date(2026, 1, 7), date(2026, 1, 1)), Granularity.ALL),
    ],
)
async def test_a_reversed_or_too_long_range_is_invalid_and_stores_nothing(
    admin: Principal, clock: FrozenClock, days: tuple[date, date], granularity: Granularity
) -> None:
    with pytest.raises(InvalidValue) as caught:
        await export(admin, clock, days=days, granularity=granularity)
    assert caught.value.field == "range"
    assert await UsageExport.all().count() == 0


@pytest.mark.usefixtures("db")
async def test_a_member_may_not_export(team: Team, clock: FrozenClock) -> None:
    ben = Principal(team.admin.account_id, team.ben.id, Role.MEMBER, team.admin.token_id)
    with pytest.raises(Forbidden):
        await export(ben, clock)
    assert await UsageExport.all().count() == 0


@pytest.mark.usefixtures("db")
async def test_opening_checks_expiry_and_the_export_itself(team: Team, clock: FrozenClock) -> None:
    # given
    created = await export(team.admin, clock)
    export_id, expires, _ = url_parts(created.url)

    async def attempt(export_id: str = export_id, expires: str = expires) -> object:
        signature = sign_export(export_id, expires, secret=SECRET)
        return await open_export(
            export_id=export_id, expires=expires, signature=signature, secret=SECRET, clock=clock
        )

    # then: an id we never issued, correctly signed, is not found
    with pytest.raises(NotFound):
        await attempt(export_id=str(created.id + 1))
    # and the URL works for 15 minutes, not a second more
    clock.advance(timedelta(minutes=15) - timedelta(microseconds=1))
    await attempt()
    clock.advance(timedelta(microseconds=1))
    with pytest.raises(ExportExpired):
        await attempt()


@pytest.mark.usefixtures("db")
async def test_a_revoked_token_or_a_new_week_start_retires_the_url(
    team: Team, clock: FrozenClock
) -> None:
    # given
    weekly = await export(team.admin, clock, granularity=Granularity.WEEK)
    daily = await export(team.admin, clock)
    # when the week start changes, only the weekly export would change shape
    await update_account(actor=team.admin, week_start=WeekStart.SUNDAY, clock=clock)
    with pytest.raises(ExportExpired, match="week start"):
        await download(weekly, clock)
    assert len((await download(daily, clock))[1]) == 8
    # when the token that made them is revoked
    await revoke_token(actor=team.admin, token_id=team.admin.token_id, runtime=Runtime(clock=clock))
    with pytest.raises(ExportExpired, match="revoked"):
        await download(daily, clock)
