"""Outgoing webhooks: WebhookEndpoint, WebhookDelivery, create/deleteWebhookEndpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from models import WebhookDelivery as DeliveryRow
from models import WebhookEndpoint as EndpointRow
from schema.context import Context
from schema.enums import DeliveryStatus, NoticeKind
from schema.errors import UserError, reports_user_errors
from schema.ids import to_id, to_key
from schema.notices import Notice
from schema.pagination import Connection, CursorCodec, page_size
from schema.permissions import IsAdmin
from services import outbox, webhook_endpoints
from services.clock import from_micros
from services.history import Page

DELIVERY_CURSORS = CursorCodec("delivery")


@strawberry.type
class WebhookDelivery:
    id: strawberry.ID
    event_id: strawberry.ID = strawberry.field(
        description='The event id, the same on every attempt (the body\'s "id").'
    )
    notice: Notice
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None = strawberry.field(
        description="When the next attempt is due; null once SUCCEEDED or FAILED."
    )
    created_at: datetime

    @classmethod
    def from_model(cls, row: DeliveryRow) -> WebhookDelivery:
        pending = row.next_attempt_us is not None and row.status.value == "PENDING"
        return cls(
            id=to_id(row.id),
            event_id=strawberry.ID(row.notice.event_id),
            notice=Notice.from_model(row.notice),
            status=row.status,
            attempts=row.attempts,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            next_attempt_at=from_micros(row.next_attempt_us or 0) if pending else None,
            created_at=row.created_at,
        )


@strawberry.type
class WebhookDeliveryConnection(Connection[WebhookDelivery]):
    @classmethod
    def from_result(cls, page: Page[DeliveryRow], *, secret: str) -> WebhookDeliveryConnection:
        return cls.from_page(
            page,
            node=WebhookDelivery.from_model,
            cursor=lambda row: DELIVERY_CURSORS.encode([row.id], secret=secret),
        )


@strawberry.type
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    events: list[NoticeKind] = strawberry.field(description="The notice kinds it receives.")
    created_at: datetime
    key: strawberry.Private[int]

    @classmethod
    def from_model(cls, row: EndpointRow) -> WebhookEndpoint:
        return cls(
            id=to_id(row.id),
            url=row.url,
            events=webhook_endpoints.events_of(row),
            created_at=row.created_at,
            key=row.id,
        )

    @strawberry.field(description="Newest first.")
    async def deliveries(
        self, info: strawberry.Info[Context, Any], first: int | None = 20, after: str | None = None
    ) -> WebhookDeliveryConnection:
        secret = info.context.settings.secret_key
        page = await outbox.delivery_page(
            endpoint_id=self.key,
            first=page_size(first, default=20),
            after=DELIVERY_CURSORS.decode_id(after, secret=secret),
        )
        return WebhookDeliveryConnection.from_result(page, secret=secret)


@strawberry.input
class CreateWebhookEndpointInput:
    url: str = strawberry.field(
        description="http or https; see RULES.md for which hosts are allowed."
    )
    events: list[NoticeKind] | None = strawberry.field(
        default=None, description="Null: every kind."
    )


@strawberry.type
class CreateWebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = None
    secret: str | None = strawberry.field(
        default=None, description="The signing secret (whsec_...), shown once."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class DeleteWebhookEndpointInput:
    endpoint_id: strawberry.ID


@strawberry.type
class DeleteWebhookEndpointPayload:
    deleted: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class WebhookEndpointMutation:
    @strawberry.mutation(
        description="ADMIN: the signing secret is in the payload, shown once.",
        permission_classes=[IsAdmin],
    )
    @reports_user_errors
    async def create_webhook_endpoint(
        self, info: strawberry.Info[Context, Any], input: CreateWebhookEndpointInput
    ) -> CreateWebhookEndpointPayload:
        row, secret = await webhook_endpoints.create_endpoint(
            actor=info.context.actor,
            url=input.url,
            events=input.events,
            allow_private=info.context.settings.webhook_allow_private,
            clock=info.context.clock,
        )
        return CreateWebhookEndpointPayload(endpoint=WebhookEndpoint.from_model(row), secret=secret)

    @strawberry.mutation(description="ADMIN", permission_classes=[IsAdmin])
    @reports_user_errors
    async def delete_webhook_endpoint(
        self, info: strawberry.Info[Context, Any], input: DeleteWebhookEndpointInput
    ) -> DeleteWebhookEndpointPayload:
        await webhook_endpoints.delete_endpoint(
            actor=info.context.actor,
            endpoint_id=to_key(input.endpoint_id, field="endpoint_id"),
            clock=info.context.clock,
        )
        return DeleteWebhookEndpointPayload(deleted=True)
