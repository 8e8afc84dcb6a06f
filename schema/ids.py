"""Global ids: the database key as a decimal string."""

from __future__ import annotations

import strawberry

from services.errors import NotFound

_MAX_KEY = 2**63 - 1


def to_key(value: strawberry.ID | str, *, field: str) -> int:
    """The database key behind an id; an id that could never exist is NOT_FOUND, like any other."""
    text = str(value)
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= _MAX_KEY:
        raise NotFound.unknown(field)
    return int(text)


def to_id(key: int) -> strawberry.ID:
    return strawberry.ID(str(key))
