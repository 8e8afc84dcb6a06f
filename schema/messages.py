"""Messages: the Message type and its connection, segmentInfo, and sendMessage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from models import Message as MessageRow
from schema.context import Context
from schema.credits import CreditBalance
from schema.enums import Direction, Encoding, MessageStatus
from schema.errors import UserError, reports_user_errors
from schema.ids import to_id, to_key
from schema.inboxes import Inbox
from schema.members import Member
from schema.pagination import Connection, CursorCodec
from services import billing, messaging
from services.clock import from_micros, to_micros
from services.history import MessagePosition, Page
from services.segments import SegmentCount

MESSAGE_CURSORS = CursorCodec("message")


@strawberry.type
class Message:
    id: strawberry.ID
    direction: Direction
    from_: str = strawberry.field(name="from")
    to: str
    body: str
    encoding: Encoding
    segments: int
    credits: int = strawberry.field(description="Credits taken for this message (one per segment).")
    status: MessageStatus
    provider_message_id: str | None = strawberry.field(
        description="The carrier's id for the message (the one its webhooks use)."
    )
    created_at: datetime
    inbox_key: strawberry.Private[int]
    sender_key: strawberry.Private[int | None]

    @classmethod
    def from_model(cls, row: MessageRow) -> Message:
        return cls(
            id=to_id(row.id),
            direction=row.direction,
            from_=row.from_number,
            to=row.to_number,
            body=row.body,
            encoding=row.encoding,
            segments=row.segments,
            credits=row.credits,
            status=row.status,
            provider_message_id=row.provider_message_id,
            created_at=row.created_at,
            inbox_key=row.inbox_id,
            sender_key=row.sender_id,
        )

    @strawberry.field
    async def inbox(self, info: strawberry.Info[Context, Any]) -> Inbox:
        return Inbox.from_model(await info.context.loaders.inbox.load(self.inbox_key))

    @strawberry.field(description="Who sent it (OUTBOUND only).")
    async def sender(self, info: strawberry.Info[Context, Any]) -> Member | None:
        if self.sender_key is None:
            return None
        row = await info.context.loaders.member.load(self.sender_key)
        return None if row is None else Member.from_model(row)


@strawberry.type
class MessageConnection(Connection[Message]):
    @classmethod
    def from_result(cls, page: Page[MessageRow], *, secret: str) -> MessageConnection:
        return cls.from_page(
            page,
            node=Message.from_model,
            cursor=lambda row: MESSAGE_CURSORS.encode(
                [to_micros(row.created_at), row.id], secret=secret
            ),
        )


def message_position(after: str | None, *, secret: str) -> MessagePosition | None:
    """The (createdAt, id) position behind a message cursor."""
    position = MESSAGE_CURSORS.decode(after, secret=secret)
    if position is None:
        return None
    created_at, key = position
    return MessagePosition(created_at=from_micros(created_at), id=key)


@strawberry.type
class SegmentInfo:
    encoding: Encoding
    units: int = strawberry.field(
        description="GSM7: septets, extension-table characters counting 2. UCS2: UTF-16 code units."
    )
    segments: int = strawberry.field(description="0 for an empty body.")
    units_per_segment: int = strawberry.field(description="160 or 153 (GSM7), 70 or 67 (UCS2).")
    remaining_in_segment: int = strawberry.field(
        description="Units that still fit before another segment starts."
    )
    non_gsm_characters: list[str] = strawberry.field(
        description="The distinct characters that force UCS2, in order of first appearance."
    )
    credits: int = strawberry.field(description="Credits a send would take.")

    @classmethod
    def from_result(cls, count: SegmentCount) -> SegmentInfo:
        return cls(
            encoding=count.encoding,
            units=count.units,
            segments=count.segments,
            units_per_segment=count.units_per_segment,
            remaining_in_segment=count.remaining_in_segment,
            non_gsm_characters=list(count.non_gsm_characters),
            credits=count.credits,
        )


@strawberry.type
class MessageQuery:
    @strawberry.field(description="The text box indicator: what sending this body would cost.")
    def segment_info(self, body: str) -> SegmentInfo:
        return SegmentInfo.from_result(billing.estimate(body))


@strawberry.input
class SendMessageInput:
    inbox_id: strawberry.ID
    to: str = strawberry.field(description="Any common way of writing a number; stored as E.164.")
    body: str
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="The same key again returns the first result and takes no more credits.",
    )


@strawberry.type
class SendMessagePayload:
    message: Message | None = None
    balance: CreditBalance | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class MessageMutation:
    @strawberry.mutation
    @reports_user_errors
    async def send_message(
        self, info: strawberry.Info[Context, Any], input: SendMessageInput
    ) -> SendMessagePayload:
        runtime = info.context.runtime
        sent = await messaging.send_message(
            actor=info.context.actor,
            inbox_id=to_key(input.inbox_id, field="inbox_id"),
            to=input.to,
            body=input.body,
            idempotency_key=input.idempotency_key,
            region=info.context.settings.default_region,
            runtime=runtime,
        )
        return SendMessagePayload(
            message=Message.from_model(sent.message),
            balance=CreditBalance.from_result(sent.balance),
        )
