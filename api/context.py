"""The per-request (per-connection, on websockets) GraphQL context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader

from api.runtime import Runtime
from api.settings import Settings
from models import Inbox, Member, Message
from services import history, inboxes, members
from services.access import Principal
from services.clock import Clock


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
    settings: Settings
    runtime: Runtime
    principal: Principal | None = None
    loaders: Loaders = field(default_factory=Loaders)
    # Filled by Strawberry from the websocket connection_init payload.
    connection_params: dict[str, Any] | None = None

    @property
    def clock(self) -> Clock:
        return self.runtime.clock

    @property
    def actor(self) -> Principal:
        """The authenticated principal; the auth extension guarantees one inside resolvers."""
        if self.principal is None:
            raise RuntimeError("resolver ran without an authenticated principal")
        return self.principal
