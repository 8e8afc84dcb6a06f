"""Phone numbers: any common way of writing one in, E.164 out (libphonenumber rules)."""

from __future__ import annotations

import functools

import phonenumbers

from services.errors import InvalidPhoneNumber
from services.validation import quoted


def to_e164(raw: str, *, region: str, field: str) -> str:
    """Parse `raw` with `region` as the default country; raise InvalidPhoneNumber if invalid."""
    if len(raw) <= MAX_CACHED_LENGTH:
        parsed = _parsed(raw, region)
        if parsed is not None:
            return parsed
    return _to_e164(raw, region=region, field=field)


# A team texts the same customers all day, and libphonenumber's parse is the dearest step
# of checking a send: valid numbers are kept, by what was written and the region.
MAX_CACHED_LENGTH = 64


@functools.lru_cache(maxsize=8192)
def _parsed(raw: str, region: str) -> str | None:
    try:
        return _to_e164(raw, region=region, field="")
    except InvalidPhoneNumber:
        return None


def _to_e164(raw: str, *, region: str, field: str) -> str:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"{quoted(raw)} is not a phone number.", field=field) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber(f"{quoted(raw)} is not a valid phone number.", field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
