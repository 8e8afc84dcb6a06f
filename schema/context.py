"""The per-request (per-connection, on websockets) GraphQL context.

Declared here because the schema owns what its resolvers read; `api/graphql.py` builds it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader

from models import Account, Inbox, Member, Message
from services import accounts, history, inboxes, members
from services.access import Principal
from services.clock import Clock
from services.runtime import Runtime
from services.usage_budget import UsageBudget


class SchemaSettings(Protocol):
    """The settings resolvers and the schema's extensions read (api's `Settings` has them)."""

    @property
    def default_region(self) -> str: ...
    @property
    def secret_key(self) -> str: ...
    @property
    def public_url(self) -> str: ...
    @property
    def introspection(self) -> bool: ...
    @property
    def max_query_depth(self) -> int: ...
    @property
    def max_query_aliases(self) -> int: ...
    @property
    def max_query_tokens(self) -> int: ...
    @property
    def max_usage_reports(self) -> int: ...
    @property
    def max_usage_buckets(self) -> int: ...
    @property
    def webhook_allow_private(self) -> bool: ...


# A websocket's operations share its one Context and run at the same time, each in an
# asyncio task of its own: a context variable gives each operation a budget of its own.
_usage_budget: ContextVar[UsageBudget] = ContextVar("tally_usage_budget")


async def _load_members(ids: list[int]) -> list[Member | None]:
    found = await members.members_by_ids(ids)
    return [found.get(i) for i in ids]


async def _load_personal_inboxes(member_ids: list[int]) -> list[Inbox | None]:
    found = await members.personal_inboxes(member_ids)
    return [found.get(i) for i in member_ids]


async def _load_inbox_member_ids(inbox_ids: list[int]) -> list[list[int]]:
    found = await inboxes.members_of_inboxes(inbox_ids)
    return [found[i] for i in inbox_ids]


async def _load_inboxes(ids: list[int]) -> list[Inbox]:
    # A message's inbox always exists (a foreign key): a miss is a bug, not a null.
    found = await history.inboxes_by_ids(ids)
    return [found[i] for i in ids]


async def _load_messages(ids: list[int]) -> list[Message | None]:
    found = await history.messages_by_ids(ids)
    return [found.get(i) for i in ids]


@dataclass
class Loaders:
    """Batch loaders; built per request so nothing stale outlives it."""

    member: DataLoader[int, Member | None] = field(
        default_factory=lambda: DataLoader(_load_members)
    )
    personal_inbox: DataLoader[int, Inbox | None] = field(
        default_factory=lambda: DataLoader(_load_personal_inboxes)
    )
    inbox_member_ids: DataLoader[int, list[int]] = field(
        default_factory=lambda: DataLoader(_load_inbox_member_ids)
    )
    inbox: DataLoader[int, Inbox] = field(default_factory=lambda: DataLoader(_load_inboxes))
    message: DataLoader[int, Message | None] = field(
        default_factory=lambda: DataLoader(_load_messages)
    )


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket
    settings: SchemaSettings
    runtime: Runtime
    principal: Principal | None = None
    # An HTTP request's account, once read (a websocket's context outlives any one read).
    request_account: Account | None = None
    # Made on first use: most requests (a send, a balance) load nothing in batches.
    _loaders: Loaders | None = field(default=None, repr=False)
    # Filled by Strawberry from the websocket connection_init payload.
    connection_params: dict[str, Any] | None = None

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = Loaders()
        return self._loaders

    @loaders.setter
    def loaders(self, loaders: Loaders) -> None:
        self._loaders = loaders

    @property
    def clock(self) -> Clock:
        return self.runtime.clock

    @property
    def actor(self) -> Principal:
        """The authenticated principal; the auth extension guarantees one inside resolvers."""
        if self.principal is None:
            raise RuntimeError("resolver ran without an authenticated principal")
        return self.principal

    async def account(self) -> Account:
        """The actor's account: read once per HTTP request; on a websocket, whose
        connection outlives any one read, read anew for each operation."""
        if self.request_account is not None:
            return self.request_account
        account = await accounts.get_account(self.actor.account_id)
        if isinstance(self.request, Request):
            self.request_account = account
        return account

    @property
    def usage_budget(self) -> UsageBudget:
        """What the running operation may still ask of usage reports (RULES: "Limits")."""
        try:
            return _usage_budget.get()
        except LookupError:
            raise RuntimeError("resolver ran outside an operation with a usage budget") from None

    def open_usage_budget(self) -> None:
        """A full budget for the operation (or subscription event) about to run."""
        _usage_budget.set(
            UsageBudget(
                max_reports=self.settings.max_usage_reports,
                max_buckets=self.settings.max_usage_buckets,
            )
        )
