"""Scalars whose parsing the contract pins down more tightly than Strawberry's defaults."""

from __future__ import annotations

import re
from datetime import date

import strawberry
from strawberry.types.scalar import ScalarDefinition

from services.validation import quoted

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_date(value: object) -> date:
    """A calendar day written YYYY-MM-DD; ValueError otherwise.

    Python's `date.fromisoformat` also takes ISO 8601's basic form (`20260101`) and
    week dates (`2026-W01-1`); the contract's dates are the extended calendar form only.
    A ValueError (rather than Strawberry's GraphQLError) lets graphql-core say where
    the value was, so the error can name its argument (schema/extensions.py).
    """
    if not isinstance(value, str) or not _ISO_DAY.fullmatch(value):
        raise ValueError(f"Expected a date written YYYY-MM-DD, not {quoted(value)}.")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value} is not a day of the calendar.") from None


Date: ScalarDefinition = strawberry.scalar(
    name="Date",
    description="Date (isoformat)",
    serialize=date.isoformat,
    parse_value=parse_date,
)
