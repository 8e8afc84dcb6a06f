"""Domain errors: expected failures that services raise and the edge reports.

    TallyError                   every expected failure; `code` is the contract's ErrorCode
    ├── NotFound                 an id that does not exist or belongs to another account
    ├── Forbidden                the actor's role may not do this
    ├── InvalidValue             a malformed or out-of-range value
    ├── InvalidPhoneNumber       a number libphonenumber cannot parse as valid
    ├── AlreadyExists            a phone number or e-mail that is taken
    ├── EmptyBody / BodyTooLong  message bodies
    ├── InsufficientCredits      an outbound send the balance cannot cover
    ├── PaymentMethodRequired    a charge with no saved payment method
    ├── PaymentDeclined          the payment provider declined the charge
    └── IdempotencyConflict      a key reused with a different input

`field` names the input at fault in the service's own terms (snake_case, dotted
for nesting, e.g. "phone_number"); the edge turns it into the GraphQL path.
"""

from __future__ import annotations

from typing import ClassVar


class TallyError(Exception):
    code: ClassVar[str] = "INVALID_VALUE"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class NotFound(TallyError):
    code = "NOT_FOUND"


class Forbidden(TallyError):
    code = "FORBIDDEN"


class InvalidValue(TallyError):
    code = "INVALID_VALUE"


class InvalidPhoneNumber(TallyError):
    code = "INVALID_PHONE_NUMBER"


class AlreadyExists(TallyError):
    code = "ALREADY_EXISTS"


class EmptyBody(TallyError):
    code = "EMPTY_BODY"


class BodyTooLong(TallyError):
    code = "BODY_TOO_LONG"


class InsufficientCredits(TallyError):
    code = "INSUFFICIENT_CREDITS"

    def __init__(self, *, balance: int, required: int) -> None:
        super().__init__(
            f"This message needs {required} credits and the balance is {balance}.", field=None
        )
        self.balance = balance
        self.required = required


class PaymentMethodRequired(TallyError):
    code = "PAYMENT_METHOD_REQUIRED"


class PaymentDeclined(TallyError):
    code = "PAYMENT_DECLINED"


class IdempotencyConflict(TallyError):
    code = "IDEMPOTENCY_CONFLICT"
