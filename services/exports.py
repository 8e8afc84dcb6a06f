"""Usage exports: a usage report as a CSV file behind a short-lived signed URL.

``create_export`` (ADMIN) checks the range like the usage report, resolves an absent range
to all time at that instant, records the export and answers with a URL that works without
a bearer token until ``expires_at`` (``LIFETIME`` after creation)::

    {public_url}/exports/{id}.csv?expires={unix seconds}&signature={hex HMAC-SHA256}

The signature covers ``"{id}:{expires}"``, keyed with a key derived from the secret key, so
neither can be changed. ``open_export`` checks, in this order and before anything is read:
the signature (``BadSignature``), the expiry (``ExportExpired``); then it looks the export up
(``NotFound``), reads the report from the rollups (services/usage.py) and hands back the
file's lines as a generator.

The file (RFC 4180, UTF-8, CRLF): a header, then one row per bucket and group, bucket by
bucket. Grouped exports have no account rows, so a pivot never counts anything twice; an
export grouped by SHARED_INBOX of an account without shared inboxes is the header alone.
Names that a spreadsheet would read as a formula are prefixed with ``'`` (OWASP).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum

from models import Account, ApiToken, Member, UsageExport
from services.access import Principal, require_admin
from services.calendar import Granularity, InvalidRange, WeekStart, bucket_count
from services.clock import Clock
from services.errors import InvalidValue, NotFound
from services.usage import Figures, GroupUsage, Report, UsageGroupBy, account_usage

__all__ = [
    "HEADER",
    "LIFETIME",
    "BadSignature",
    "CreatedExport",
    "ExportExpired",
    "ExportFile",
    "ExportFormat",
    "ExportRow",
    "create_export",
    "csv_lines",
    "export_rows",
    "export_url",
    "guard_formula",
    "open_export",
    "sign_export",
    "verify_export",
]

LIFETIME = timedelta(minutes=15)
HEADER = (
    "period_start",
    "period_end",
    "group_type",
    "group_id",
    "group_name",
    "segments",
    "segments_sent",
    "segments_received",
    "messages",
    "messages_sent",
    "messages_received",
)
# OWASP "CSV Injection": a cell starting with one of these may be run as a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_SIGNATURE_CHARS = 64  # hex SHA-256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ExportFormat(Enum):
    CSV = "CSV"


class BadSignature(Exception):
    """The URL's signature is missing, malformed or does not match its id and expiry."""

    def __str__(self) -> str:
        return "The export URL is not one this server signed, or it was changed."


class ExportExpired(Exception):
    """The URL was valid but is no longer: ``expires_at`` has passed, or the export is stale."""

    def __init__(self, message: str = "This export URL has expired: create a new export.") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class CreatedExport:
    id: int
    format: ExportFormat
    url: str
    expires_at: datetime
    rows: int


@dataclass(frozen=True, slots=True)
class ExportFile:
    """A download: its file name and its lines (header first), produced as they are read."""

    filename: str
    lines: Iterator[str]


@dataclass(frozen=True, slots=True)
class ExportRow:
    start: date
    end: date
    group_type: str
    group_id: int
    group_name: str
    figures: Figures


# Signing (pure)


def _key(secret: str) -> bytes:
    # Derived per purpose, so an export signature is never valid as anything else.
    return hashlib.sha256(b"tally-export:" + secret.encode()).digest()


def sign_export(export_id: int | str, expires: int | str, *, secret: str) -> str:
    """The hex HMAC-SHA256 of ``"{export_id}:{expires}"`` (expires in Unix seconds)."""
    message = f"{export_id}:{expires}".encode()
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def verify_export(
    export_id: str, expires: str | None, signature: str | None, *, secret: str, now: datetime
) -> int:
    """The export id of a URL signed by us and not expired; BadSignature, then ExportExpired."""
    if expires is None or signature is None or not _plain_number(expires):
        raise BadSignature()
    given = signature.strip().lower().encode("ascii", "replace")
    expected = sign_export(export_id, expires, secret=secret).encode()
    if len(given) != _SIGNATURE_CHARS or not hmac.compare_digest(given, expected):
        raise BadSignature()
    if not _plain_number(export_id):
        # Only a URL we signed gets here, and we sign nothing but numbers.
        raise BadSignature()
    if now >= _EPOCH + timedelta(seconds=int(expires)):
        raise ExportExpired()
    return int(export_id)


def _plain_number(text: str) -> bool:
    return 0 < len(text) <= 19 and text.isascii() and text.isdigit()


def export_url(export_id: int, expires_at: datetime, *, public_url: str, secret: str) -> str:
    """The download URL of an export, signed until ``expires_at``."""
    expires = int(expires_at.timestamp())
    signature = sign_export(export_id, expires, secret=secret)
    return f"{public_url}/exports/{export_id}.csv?expires={expires}&signature={signature}"


# Creating


async def create_export(
    *,
    actor: Principal,
    days: tuple[date, date] | None,
    granularity: Granularity,
    group_by: UsageGroupBy,
    format: ExportFormat,
    clock: Clock,
    public_url: str,
    secret: str,
) -> CreatedExport:
    """Record a usage export (ADMIN) and sign its URL; ``rows`` counts the file's data rows."""
    require_admin(actor, "export the account's usage")
    account = await Account.get(id=actor.account_id)
    if days is not None:
        _bucket_count(*days, granularity, account.week_start)
    # One ALL bucket: resolves an absent range and lists the groups, reading a month a row.
    outline = await account_usage(
        actor=actor, days=days, granularity=Granularity.ALL, group_by=group_by, clock=clock
    )
    buckets = _bucket_count(outline.start, outline.end, granularity, account.week_start)
    group_ids = [_group_id(group) for group in outline.groups]
    now = clock.now()
    export = await UsageExport.create(
        account_id=account.id,
        member_id=actor.member_id,
        token_id=actor.token_id,
        first_day=outline.start,
        last_day=outline.end,
        granularity=granularity.value,
        group_by=group_by.value,
        format=format.value,
        week_start=account.week_start,
        group_ids=group_ids,
        row_count=buckets * (len(group_ids) if group_by is not UsageGroupBy.NONE else 1),
        created_at=now,
        expires_at=_whole_second(now + LIFETIME),
    )
    url = export_url(export.id, export.expires_at, public_url=public_url, secret=secret)
    return CreatedExport(export.id, format, url, export.expires_at, export.row_count)


def _whole_second(instant: datetime) -> datetime:
    """``instant`` rounded up to a whole second: the URL carries the expiry in Unix seconds."""
    whole = instant.replace(microsecond=0)
    return whole if whole == instant else whole + timedelta(seconds=1)


def _bucket_count(start: date, end: date, granularity: Granularity, week: WeekStart) -> int:
    try:
        return bucket_count(start, end, granularity, week)
    except InvalidRange as error:
        # The range as a whole is at fault, reversed or too long: name the input field.
        raise InvalidValue(error.message, field="range") from None


def _group_id(group: GroupUsage) -> int:
    owner = group.member or group.inbox
    assert owner is not None, "a group is a member or an inbox"
    group_id: int = owner.id
    return group_id


# Downloading


async def open_export(
    *, export_id: str, expires: str | None, signature: str | None, secret: str, clock: Clock
) -> ExportFile:
    """The file behind a signed URL, its figures read now; the signature is checked first."""
    key = verify_export(export_id, expires, signature, secret=secret, now=clock.now())
    export = await UsageExport.get_or_none(id=key)
    if export is None:
        raise NotFound("No such export.")
    account = await Account.get(id=export.account_id)
    granularity = Granularity(export.granularity)
    group_by = UsageGroupBy(export.group_by)
    if granularity is Granularity.WEEK and account.week_start != export.week_start:
        # Other weeks would make another number of rows than the export announced.
        raise ExportExpired("The account's week start changed: create a new export.")
    report = await account_usage(
        actor=await _creator(export),
        days=(export.first_day, export.last_day),
        granularity=granularity,
        group_by=group_by,
        clock=clock,
    )
    rows = export_rows(report, group_by=group_by, account=account, group_ids=export.group_ids)
    filename = f"tally-usage-{export.first_day}-{export.last_day}.csv"
    return ExportFile(filename=filename, lines=csv_lines(rows))


async def _creator(export: UsageExport) -> Principal:
    """The export's creator: the download reads with its rights, while its token lives."""
    token = await ApiToken.get(id=export.token_id)
    if token.revoked_at is not None:
        raise ExportExpired("The token that created this export was revoked.")
    member = await Member.get(id=export.member_id)
    return Principal(export.account_id, member.id, member.role, token.id)


def export_rows(
    report: Report, *, group_by: UsageGroupBy, account: Account, group_ids: Sequence[int]
) -> Iterator[ExportRow]:
    """Bucket by bucket: the account's row (NONE), or a row per group of ``group_ids``."""
    if group_by is UsageGroupBy.NONE:
        for bucket in report.series:
            yield ExportRow(
                bucket.start, bucket.end, "account", account.id, account.name, bucket.figures
            )
        return
    wanted = set(group_ids)
    # Groups made after the export was created are left out: the file keeps its row count.
    groups = [group for group in report.groups if _group_id(group) in wanted]
    for index, bucket in enumerate(report.series):
        for group in groups:
            yield _group_row(group, bucket.start, bucket.end, group.series[index].figures)


def _group_row(group: GroupUsage, start: date, end: date, figures: Figures) -> ExportRow:
    if group.member is not None:
        return ExportRow(start, end, "member", group.member.id, group.member.name, figures)
    assert group.inbox is not None, "a group is a member or an inbox"
    return ExportRow(start, end, "shared_inbox", group.inbox.id, group.inbox.name, figures)


# Writing CSV (pure)


def guard_formula(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would read it as a formula (OWASP)."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def csv_lines(rows: Iterable[ExportRow]) -> Iterator[str]:
    """The header, then one RFC 4180 line (CRLF-terminated) per row, each made when asked for."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for cells in _cells(rows):
        writer.writerow(cells)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _cells(rows: Iterable[ExportRow]) -> Iterator[Sequence[object]]:
    yield HEADER
    for row in rows:
        figures = row.figures
        yield (
            row.start.isoformat(),
            row.end.isoformat(),
            row.group_type,
            row.group_id,
            guard_formula(row.group_name),
            figures.segments,
            figures.segments_sent,
            figures.segments_received,
            figures.messages,
            figures.messages_sent,
            figures.messages_received,
        )
