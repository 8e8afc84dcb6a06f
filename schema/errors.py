"""Domain errors at the edge: `userErrors` in mutation payloads, codes on GraphQL errors."""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, ParamSpec, TypeVar

import strawberry

from services.errors import TallyError


@strawberry.enum
class ErrorCode(Enum):
    INVALID_VALUE = "INVALID_VALUE"
    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    INVALID_PHONE_NUMBER = "INVALID_PHONE_NUMBER"
    EMPTY_BODY = "EMPTY_BODY"
    BODY_TOO_LONG = "BODY_TOO_LONG"
    INSUFFICIENT_CREDITS = "INSUFFICIENT_CREDITS"
    PAYMENT_METHOD_REQUIRED = "PAYMENT_METHOD_REQUIRED"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"


def camel_case(name: str) -> str:
    """A snake_case name as the contract spells it ("inbox_id" -> "inboxId")."""
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def input_path(field: str | None) -> list[str] | None:
    """A service's field name ("personal_phone_number") as the contract's input path."""
    if field is None:
        return None
    return ["input", *(camel_case(part) for part in field.split("."))]


@strawberry.type
class UserError:
    code: ErrorCode
    field: list[str] | None = strawberry.field(
        description='Path to the input field at fault, e.g. ["input", "to"].'
    )
    message: str

    @classmethod
    def from_error(cls, error: TallyError) -> UserError:
        return cls(code=ErrorCode(error.code), field=input_path(error.field), message=error.message)


P = ParamSpec("P")
R = TypeVar("R")


def reports_user_errors(
    resolver: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """Turn a domain error raised by a mutation into its payload, with only `userErrors` set."""

    @functools.wraps(resolver)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await resolver(*args, **kwargs)
        except TallyError as error:
            payload: Any = typing.get_type_hints(resolver)["return"]
            return typing.cast(R, payload(user_errors=[UserError.from_error(error)]))

    return wrapper
