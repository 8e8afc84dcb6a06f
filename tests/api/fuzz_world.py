"""What the schema fuzz runs against, and what it checks after every request.

A `World` is a fresh account per example (an admin, a member with a personal inbox,
a shared inbox, a saved card), so that no generated request (a revoked token, a
changed time zone) leaks into the next one. `Credits` is the part of an account that
money depends on; `check_answer` is the contract of every answer, whatever was sent.
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import graphql
import httpx
import tortoise.exceptions
from tortoise.transactions import in_transaction

import services.errors
from models import Account, Inbox, LedgerEntry
from models.enums import CreditBucket, LedgerEntryKind, Role
from services.access import Principal
from services.accounts import PlanTerms, create_account
from services.auto_recharge import update_auto_recharge
from services.clock import Clock
from services.inboxes import create_shared_inbox
from services.members import create_member
from services.payments import PaymentProvider, set_payment_method
from services.tokens import create_token

REPO_ROOT = Path(__file__).resolve().parents[2]
# An id far beyond any table: what a guess at another account's key meets.
NEVER = "987654321"


@dataclass(frozen=True, slots=True)
class World:
    """One account's ids (as GraphQL ids) and secrets, and another account's ids."""

    account_id: int
    admin_token: str
    member_token: str
    ids: dict[str, str]

    def token(self, role: Role) -> str:
        return self.admin_token if role is Role.ADMIN else self.member_token


@dataclass(frozen=True, slots=True)
class Setup:
    """How a world starts: its monthly allotment, its card, and auto-recharge on or off."""

    monthly_credits: int = 30
    card: str = "tok_visa"
    auto_recharge: bool = False


def phone_number(n: int) -> str:
    """The n-th of 10,000 distinct valid numbers (+1 212 555 0000-9999; the fuzz pools use 415)."""
    return f"+1212555{n % 10_000:04d}"


async def open_world(
    n: int, setup: Setup, *, clock: Clock, payments: PaymentProvider, other: dict[str, str]
) -> World:
    """Account number `n`: an admin, a member, a personal and a shared inbox, as `setup` says."""
    # One commit instead of one per service call: most of an example's time was fsyncs.
    async with in_transaction():
        return await _populate(n, setup, clock=clock, payments=payments, other=other)


async def _populate(
    n: int, setup: Setup, *, clock: Clock, payments: PaymentProvider, other: dict[str, str]
) -> World:
    new = await create_account(
        name=f"Fuzz {n}",
        admin_name="Ada",
        admin_email=f"ada{n}@fuzz.example",
        plan=PlanTerms(monthly_credits=setup.monthly_credits, price_per_credit_cents=2),
        clock=clock,
    )
    admin = Principal(new.account.id, new.admin.id, Role.ADMIN, new.token.token.id)
    member = await create_member(
        actor=admin, name="Max", email=f"max{n}@fuzz.example", role=Role.MEMBER,
        personal_phone_number=phone_number(2 * n), region="US", clock=clock,
    )  # fmt: skip
    member_token = await create_token(actor=admin, member_id=member.id, name="fuzz", clock=clock)
    shared = await create_shared_inbox(
        actor=admin, name="Desk", phone_number=phone_number(2 * n + 1), member_ids=[member.id],
        region="US", clock=clock,
    )  # fmt: skip
    personal = await Inbox.get(owner_id=member.id)
    await set_payment_method(actor=admin, token=setup.card, provider=payments, clock=clock)
    if setup.auto_recharge:
        await update_auto_recharge(
            actor=admin, enabled=True, threshold_credits=10, recharge_credits=100,
            max_recharges_per_period=2, clock=clock,
        )  # fmt: skip
    ids = {
        "admin": new.admin.id,
        "member": member.id,
        "personalInbox": personal.id,
        "sharedInbox": shared.id,
        "adminToken": new.token.token.id,
        "memberToken": member_token.token.id,
    }
    return World(
        account_id=new.account.id,
        admin_token=new.token.secret,
        member_token=member_token.secret,
        ids={**{k: str(v) for k, v in ids.items()}, **other, "never": NEVER},
    )


@dataclass(frozen=True, slots=True)
class Credits:
    """An account's balance columns and the count and per-bucket sums of its ledger."""

    subscription: int
    purchased: int
    entries: int
    sums: dict[CreditBucket, int]
    last_balance_after: int | None
    kinds: tuple[LedgerEntryKind, ...]

    @classmethod
    async def of(cls, account_id: int) -> Credits:
        account = await Account.get(id=account_id)
        entries = await LedgerEntry.filter(account_id=account_id).order_by("id")
        sums = {bucket: 0 for bucket in CreditBucket}
        for entry in entries:
            sums[CreditBucket(entry.bucket)] += entry.credits
        return cls(
            subscription=account.subscription_credits,
            purchased=account.purchased_credits,
            entries=len(entries),
            sums=sums,
            last_balance_after=entries[-1].balance_after if entries else None,
            kinds=tuple(LedgerEntryKind(entry.kind) for entry in entries),
        )

    def check_consistent(self) -> None:
        """RULES.md "Credits": each bucket is the sum of its entries; balanceAfter the total."""
        assert self.sums[CreditBucket.SUBSCRIPTION] == self.subscription, self
        assert self.sums[CreditBucket.PURCHASED] == self.purchased, self
        assert self.last_balance_after == self.subscription + self.purchased, self

    def new_kinds(self, before: Credits) -> set[LedgerEntryKind]:
        assert self.kinds[: before.entries] == before.kinds, "ledger entries were rewritten"
        return set(self.kinds[before.entries :])


def _exception_names() -> frozenset[str]:
    """Class names of the exceptions the stack can raise: none belongs in an answer.

    Names that are one plain word ("Error", "Warning") cannot be told from prose
    ("Syntax Error: …") and are left out.
    """
    modules = (builtins, sqlite3, asyncpg.exceptions, tortoise.exceptions, services.errors)
    return frozenset(
        name
        for module in modules
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and not re.fullmatch("[A-Z][a-z]+", name)
    )


EXCEPTION_NAMES = _exception_names()
WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b.*\b(FROM|INTO|SET|WHERE)\b", re.DOTALL)
INTERNALS = (
    "traceback",
    'file "',
    "site-packages",
    "sqlite",
    "asyncpg",
    "tortoise",
    "pypika",
    "postgres",
    "violates",
    "constraint",
    str(REPO_ROOT).lower(),
    sys.prefix.lower(),
)
CODE = re.compile(r"[A-Z][A-Z_]*[A-Z]")


def sent_strings(document: object, *values: object) -> set[str]:
    """Every string the request carried: answers may quote these back."""
    found: set[str] = set()

    def collect(value: object) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                collect(key)
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for value in values:
        collect(value)
    if isinstance(document, str):
        try:
            for node in _string_nodes(graphql.parse(document)):
                found.add(node)
        except graphql.GraphQLError:
            found.add(document)
    return {s for s in found if s}


def _string_nodes(document: graphql.DocumentNode) -> Iterator[str]:
    class Strings(graphql.Visitor):
        def __init__(self) -> None:
            super().__init__()
            self.values: list[str] = []

        def enter_string_value(self, node: graphql.StringValueNode, *_: Any) -> None:
            self.values.append(node.value)

    visitor = Strings()
    graphql.visit(document, visitor)
    yield from visitor.values


def _without_echoes(text: str, echoes: Iterable[str]) -> str:
    # Longest first, so a quoted value is removed whole before any part of it.
    for echo in sorted(echoes, key=len, reverse=True):
        for form in (json.dumps(echo), repr(echo), echo):
            text = text.replace(form, " ")
    return text


def leaks(text: str, echoes: Iterable[str]) -> list[str]:
    """What in `text` (beyond what the client sent) reveals the server's internals."""
    own = _without_echoes(text, echoes)
    lowered = own.lower()
    found = [marker for marker in INTERNALS if marker in lowered]
    found += [word for word in WORDS.findall(own) if word in EXCEPTION_NAMES]
    if SQL.search(own):
        found.append("SQL")
    return found


def check_answer(response: httpx.Response, echoes: set[str]) -> dict[str, Any]:
    """No 5xx, a GraphQL-shaped JSON body, a code on every error, nothing internal in any."""
    request = response.request.content.decode(errors="replace")
    assert response.status_code in (200, 400), (response.status_code, request, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) <= {"data", "errors", "extensions"}, body
    assert "data" in body or body.get("errors"), body
    for error in body.get("errors") or []:
        extensions = error.get("extensions") or {}
        code = extensions.get("code")
        assert isinstance(code, str), f"an error without a code: {error}\nrequest: {request}"
        assert CODE.fullmatch(code), error
        assert code != "INTERNAL_SERVER_ERROR", f"unexpected error: {error}\nrequest: {request}"
        text = f"{error.get('message')} {json.dumps(extensions)}"
        assert not leaks(text, echoes), (leaks(text, echoes), error, request)
    return body
