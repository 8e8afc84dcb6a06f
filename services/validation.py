"""Small checks of free-text input shared by several services."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from services.errors import InvalidValue

MAX_NAME_LENGTH = 200


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
    return name


def clean_email(value: str, *, field: str) -> str:
    """A syntactically valid e-mail address, normalised (no DNS look-up)."""
    try:
        return validate_email(
            storable_text(value, field=field).strip(), check_deliverability=False
        ).normalized
    except EmailNotValidError as exc:
        raise InvalidValue(f"{value!r} is not a valid e-mail address: {exc}", field=field) from exc
