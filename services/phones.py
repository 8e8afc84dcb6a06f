"""Phone numbers: any common way of writing one in, E.164 out (libphonenumber rules)."""

from __future__ import annotations

import phonenumbers

from services.errors import InvalidPhoneNumber
from services.validation import quoted


def to_e164(raw: str, *, region: str, field: str) -> str:
    """Parse `raw` with `region` as the default country; raise InvalidPhoneNumber if invalid."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"{quoted(raw)} is not a phone number.", field=field) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber(f"{quoted(raw)} is not a valid phone number.", field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
