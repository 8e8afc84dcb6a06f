"""Lists that grow: page sizes, signed opaque cursors, date ranges, one generic Connection.

Cursors are keyset positions (never offsets, which shift while messages arrive),
signed so that a client can only hand back positions this server issued: a
cursor is base64url(payload + HMAC-SHA256(payload)[:12]), the payload being
"<kind>:<int>:<int>…". The kind makes a message cursor useless for the ledger.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Generic, Self, TypeVar
from zoneinfo import ZoneInfo

import strawberry

from services.calendar import utc_bounds
from services.errors import InvalidValue
from services.history import Page

NodeT = TypeVar("NodeT")
RowT = TypeVar("RowT")

MAX_PAGE_SIZE = 100
_MAC_BYTES = 12
# Far above any cursor we issue: longer input is refused before it is decoded.
_MAX_CURSOR_CHARS = 256


def page_size(first: int | None, *, default: int) -> int:
    """`first` when it is 1..100; null means the field's default."""
    size = default if first is None else first
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidValue(f"Ask for 1 to {MAX_PAGE_SIZE} items, not {size}.", field="first")
    return size


class CursorCodec:
    """The signed cursors of one kind of list."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def encode(self, position: Sequence[int], *, secret: str) -> str:
        payload = ":".join([self.kind, *map(str, position)]).encode()
        return base64.urlsafe_b64encode(payload + _mac(payload, secret)).decode().rstrip("=")

    def decode(self, cursor: str | None, *, secret: str) -> tuple[int, ...] | None:
        """The position behind a cursor (None for none); InvalidValue for one we did not issue."""
        if cursor is None:
            return None
        raw = _unbase64(cursor)
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, _mac(payload, secret)):
            raise _not_ours()
        kind, *values = payload.decode().split(":")
        if kind != self.kind:
            raise _not_ours()
        return tuple(int(value) for value in values)

    def decode_id(self, cursor: str | None, *, secret: str) -> int | None:
        """The row id behind a cursor of a list ordered by id alone."""
        position = self.decode(cursor, secret=secret)
        return None if position is None else position[0]


def _mac(payload: bytes, secret: str) -> bytes:
    key = hashlib.sha256(b"tally-cursor:" + secret.encode()).digest()
    return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _unbase64(cursor: str) -> bytes:
    if len(cursor) > _MAX_CURSOR_CHARS or not cursor.isascii():
        raise _not_ours()
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _not_ours() from exc


def _not_ours() -> InvalidValue:
    return InvalidValue("This is not a cursor this server issued for this list.", field="after")


@strawberry.input
class DateRangeInput:
    start: date = strawberry.field(description="First day, inclusive.")
    end: date = strawberry.field(description="Last day, inclusive.")


def utc_range(days: DateRangeInput | None, timezone: str) -> tuple[datetime, datetime] | None:
    """The range's local days in `timezone` as a half-open UTC interval; None for no range."""
    return None if days is None else utc_bounds(days.start, days.end, ZoneInfo(timezone))


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]]
    nodes: list[NodeT]
    page_info: PageInfo

    @classmethod
    def from_page(
        cls, page: Page[RowT], *, node: Callable[[RowT], NodeT], cursor: Callable[[RowT], str]
    ) -> Self:
        edges = [Edge(cursor=cursor(row), node=node(row)) for row in page.rows]
        return cls(
            edges=edges,
            nodes=[edge.node for edge in edges],
            page_info=PageInfo(
                has_next_page=page.has_next, end_cursor=edges[-1].cursor if edges else None
            ),
        )
