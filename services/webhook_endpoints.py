"""Outgoing webhook endpoints: where an account's notices are sent (services/outbox.py)."""

from __future__ import annotations

from collections.abc import Sequence

from models import Account, WebhookEndpoint
from models.enums import AuditAction, NoticeKind
from services import outbox, url_guard
from services.access import Principal, require_admin
from services.audit import audited
from services.clock import Clock
from services.errors import InvalidValue, NotFound
from services.signatures import new_secret

MAX_ENDPOINTS = 10


def events_of(endpoint: WebhookEndpoint) -> list[NoticeKind]:
    """The notice kinds an endpoint receives, in the contract's order."""
    chosen = set(endpoint.events.split(","))
    return [kind for kind in NoticeKind if kind.value in chosen]


async def create_endpoint(
    *,
    actor: Principal,
    url: str,
    events: Sequence[NoticeKind] | None,
    allow_private: bool,
    clock: Clock,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint; it and its signing secret (returned this once)."""
    require_admin(actor, "register webhook endpoints")
    parts = url_guard.checked_url(url)
    if events is not None and not events:
        raise InvalidValue("Choose at least one kind of notice, or null for all.", field="events")
    if not allow_private:
        try:
            await url_guard.ensure_public(parts)
        except url_guard.UnsafeAddress as refused:
            raise InvalidValue(str(refused), field="url") from None
    kinds = list(NoticeKind) if events is None else [k for k in NoticeKind if k in events]
    secret = new_secret()
    action = AuditAction.WEBHOOK_ENDPOINT_CREATED
    async with audited(actor=actor, action=action, clock=clock) as entry:
        # The account lock: two registrations at once cannot both be the tenth.
        await Account.select_for_update().get(id=actor.account_id)
        live = await WebhookEndpoint.filter(account_id=actor.account_id, deleted_at=None).count()
        if live >= MAX_ENDPOINTS:
            raise InvalidValue(f"An account has at most {MAX_ENDPOINTS} webhook endpoints.")
        endpoint = await WebhookEndpoint.create(
            account_id=actor.account_id,
            url=url,
            events=",".join(kind.value for kind in kinds),
            secret=secret,
            created_at=clock.now(),
        )
        entry.target_id = endpoint.id
        entry.after = _audited_fields(endpoint)
    return endpoint, secret


async def delete_endpoint(*, actor: Principal, endpoint_id: int, clock: Clock) -> None:
    """Delete an endpoint and cancel its pending deliveries."""
    require_admin(actor, "delete webhook endpoints")
    action = AuditAction.WEBHOOK_ENDPOINT_DELETED
    async with audited(actor=actor, action=action, clock=clock) as entry:
        # The account lock: a change committing notices either wrote its deliveries
        # before this (they are cancelled here) or sees the endpoint gone.
        await Account.select_for_update().get(id=actor.account_id)
        endpoint = await WebhookEndpoint.get_or_none(
            id=endpoint_id, account_id=actor.account_id, deleted_at=None
        )
        if endpoint is None:
            raise NotFound.unknown("endpoint_id")
        await WebhookEndpoint.filter(id=endpoint.id).update(deleted_at=clock.now())
        await outbox.cancel_pending(endpoint_id)
        entry.target_id = endpoint.id
        entry.before = _audited_fields(endpoint)


def _audited_fields(endpoint: WebhookEndpoint) -> dict[str, object]:
    """The endpoint as its input spells it; never its secret."""
    return {"url": endpoint.url, "events": endpoint.events.split(",")}


async def list_endpoints(*, account_id: int) -> list[WebhookEndpoint]:
    """The account's endpoints, oldest first."""
    return await WebhookEndpoint.filter(account_id=account_id, deleted_at=None).order_by("id")
