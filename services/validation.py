"""Small checks of free-text input shared by several services."""

from __future__ import annotations

import unicodedata

from email_validator import EmailNotValidError, validate_email

from services.errors import InvalidValue

MAX_NAME_LENGTH = 200
# Error messages quote the value at fault: a 1 MiB one must not come back whole.
MAX_QUOTED_CHARACTERS = 40


def quoted(value: object) -> str:
    """`value` as an error message shows it: repr, cut to a readable length."""
    shown = repr(value)
    if len(shown) > MAX_QUOTED_CHARACTERS:
        return shown[:MAX_QUOTED_CHARACTERS] + "…"
    return shown


def storable_text(value: str, *, field: str) -> str:
    """`value`, unless it holds what no database column can store: NUL or a lone surrogate."""
    if "\x00" in value:
        raise InvalidValue("Text cannot contain the NUL character.", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidValue("Text must be valid Unicode (no lone surrogates).", field=field) from exc
    return value


def clean_name(value: str, *, field: str) -> str:
    """A display name, stripped; InvalidValue when empty or longer than 200 characters."""
    name = storable_text(value, field=field).strip()
    if not name:
        raise InvalidValue("A name cannot be empty.", field=field)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidValue(f"A name has at most {MAX_NAME_LENGTH} characters.", field=field)
    # Names end up in the SPA and in CSV exports, where a newline, a tab or an escape
    # sequence would break a row or a terminal.
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise InvalidValue("A name cannot contain control characters.", field=field)
    return name


def clean_email(value: str, *, field: str) -> str:
    """A syntactically valid e-mail address, normalised (no DNS look-up)."""
    try:
        return validate_email(
            storable_text(value, field=field).strip(), check_deliverability=False
        ).normalized
    except EmailNotValidError as exc:
        raise InvalidValue(
            f"{quoted(value)} is not a valid e-mail address: {exc}", field=field
        ) from exc
