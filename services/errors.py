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
    ├── IdempotencyConflict      a key reused with a different input
    ├── BudgetExceeded           an outbound send that would pass its inbox's HARD budget
    └── UsageBudgetExceeded      a request asking for more usage reports than one may
                                 (QUERY_TOO_COMPLEX: a GraphQL error, never a userError)

`field` names the input at fault in the service's own terms (snake_case, dotted
for nesting, e.g. "phone_number"); the edge turns it into the GraphQL path.
"""

from __future__ import annotations

from typing import ClassVar, Literal


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

    @classmethod
    def unknown(cls, field: str) -> NotFound:
        """An id given as `field` that names nothing: said the same way by the services and
        by the edge (for an id that could never exist), one message for one case."""
        return cls(_UNKNOWN.get(field, "No such id."), field=field)


_UNKNOWN = {
    "inbox_id": "No such inbox.",
    "member_id": "No such member.",
    "member_ids": "One of the members does not exist.",
    "token_id": "No such token.",
    "endpoint_id": "No such webhook endpoint.",
}


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

    @classmethod
    def for_cost(cls, *, balance: int, required: int) -> InsufficientCredits:
        return cls(f"This message needs {required} credits and the balance is {balance}.")


class PaymentMethodRequired(TallyError):
    code = "PAYMENT_METHOD_REQUIRED"


class PaymentDeclined(TallyError):
    code = "PAYMENT_DECLINED"


class IdempotencyConflict(TallyError):
    code = "IDEMPOTENCY_CONFLICT"


class BudgetExceeded(TallyError):
    code = "BUDGET_EXCEEDED"

    @classmethod
    def for_send(cls, *, budget: int, used: int, required: int) -> BudgetExceeded:
        return cls(
            f"This message needs {required} credits and the inbox has {budget - used} "
            f"of its {budget} monthly credits left.",
            field="inbox_id",
        )


class UsageBudgetExceeded(TallyError):
    """A usage report past the request's budget (services/usage_budget.py).

    ``limit`` names the budget that ran out, ``maximum`` its size per request.
    """

    code = "QUERY_TOO_COMPLEX"

    def __init__(
        self, message: str, *, limit: Literal["usageReports", "usageBuckets"], maximum: int
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.maximum = maximum


def error_for_code(code: str, message: str) -> TallyError:
    """Rebuild a stored error (an idempotent request's first outcome) from its code."""
    kind = next((k for k in _KINDS if k.code == code), TallyError)
    return kind(message)


_KINDS: tuple[type[TallyError], ...] = (
    NotFound,
    Forbidden,
    InvalidValue,
    InvalidPhoneNumber,
    AlreadyExists,
    EmptyBody,
    BodyTooLong,
    InsufficientCredits,
    PaymentMethodRequired,
    PaymentDeclined,
    IdempotencyConflict,
    BudgetExceeded,
)
