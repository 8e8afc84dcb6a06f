"""Carrier webhooks: inbound messages and delivery reports, signed with TALLY_WEBHOOK_SECRET.

Every request is read (at most MAX_BODY_BYTES), then its signature checked, and only
then parsed: nothing from an unsigned body reaches JSON parsing or the services.
Every refusal is `{"error": {"code", "message"}}` with a 4xx status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.settings import Settings
from services.errors import InvalidPhoneNumber, NotFound, TallyError
from services.messaging import receive_message, record_delivery_status
from services.runtime import Runtime

MAX_BODY_BYTES = 1024 * 1024
SIGNATURE_HEADER = "x-tally-signature"
SIGNATURE_PREFIX = b"sha256="
PROVIDER_ID = "providerMessageId"
MAX_PROVIDER_ID_LENGTH = 128  # the width of messages.provider_message_id
STATUSES = ("delivered", "failed")

Payload = dict[str, str]
Handler = Callable[[Payload], Awaitable[dict[str, Any]]]


class WebhookError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message}}
        return JSONResponse(body, status_code=self.status)


async def read_signed_body(request: Request, secret: str) -> bytes:
    """The raw body, at most MAX_BODY_BYTES, whose X-Tally-Signature matches; WebhookError else."""
    declared = request.headers.get("content-length")
    if declared is not None and _over_limit(declared):
        raise _too_large_error()
    body = bytearray()
    # Counting while streaming catches chunked bodies and a Content-Length that lies.
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large_error()
    # Header values arrive as latin-1 text; comparing bytes keeps compare_digest from
    # raising on non-ASCII input, and lower() accepts upper-case hex.
    given = request.headers.get(SIGNATURE_HEADER, "").strip().encode("latin-1").lower()
    expected = (
        SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    )
    if not hmac.compare_digest(given, expected):
        raise WebhookError(401, "INVALID_SIGNATURE", "Missing or bad X-Tally-Signature.")
    return bytes(body)


def _over_limit(declared: str) -> bool:
    try:
        return int(declared) > MAX_BODY_BYTES
    except ValueError:
        raise WebhookError(400, "BAD_REQUEST", "Content-Length is not a number.") from None


def _too_large_error() -> WebhookError:
    return WebhookError(413, "PAYLOAD_TOO_LARGE", f"Bodies are at most {MAX_BODY_BYTES} bytes.")


def parse_payload(raw: bytes, fields: tuple[str, ...]) -> Payload:
    """The named string fields of a JSON object; WebhookError(400) for anything else."""
    try:
        data = json.loads(raw.decode("utf-8"))
    # ValueError covers bad UTF-8, bad JSON and over-long integers; RecursionError deep nesting.
    except (ValueError, RecursionError):
        raise _malformed("The body is not UTF-8 JSON.") from None
    if not isinstance(data, dict):
        raise _malformed("The body must be a JSON object.")
    return {name: _string(data, name) for name in fields}


def _string(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise _malformed(f"{name!r} must be a string.")
    # Lone surrogates cannot be stored as UTF-8 and PostgreSQL text refuses NUL.
    if "\x00" in value or not _encodable(value):
        raise _malformed(f"{name!r} contains characters that are not allowed.")
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _provider_id(payload: Payload) -> str:
    value = payload[PROVIDER_ID]
    if not value.strip() or len(value) > MAX_PROVIDER_ID_LENGTH:
        raise _malformed(f"{PROVIDER_ID!r} must be 1 to {MAX_PROVIDER_ID_LENGTH} characters.")
    return value


def _malformed(message: str) -> WebhookError:
    return WebhookError(400, "BAD_REQUEST", message)


def webhook_routes(settings: Settings, runtime: Runtime) -> list[Route]:
    """POST /webhooks/inbound and POST /webhooks/status."""

    async def inbound(payload: Payload) -> dict[str, Any]:
        try:
            received = await receive_message(
                from_number=payload["from"],
                to_number=payload["to"],
                body=payload["body"],
                provider_message_id=_provider_id(payload),
                region=settings.default_region,
                runtime=runtime,
            )
        except InvalidPhoneNumber:
            # No inbox can have a number that is not one: for the carrier that is a 404 too.
            message = f"No inbox has the number {payload['to']!r}: it is not a phone number."
            raise NotFound(message, field="to") from None
        return {"id": str(received.message.id), "duplicate": received.duplicate}

    async def status(payload: Payload) -> dict[str, Any]:
        if payload["status"] not in STATUSES:
            raise _malformed("'status' must be 'delivered' or 'failed'.")
        message = await record_delivery_status(
            provider_message_id=_provider_id(payload),
            delivered=payload["status"] == "delivered",
            runtime=runtime,
        )
        return {"id": str(message.id), "status": message.status.value}

    inbound_fields = ("from", "to", "body", PROVIDER_ID)
    return [
        Route("/webhooks/inbound", _endpoint(settings, inbound_fields, inbound), methods=["POST"]),
        Route(
            "/webhooks/status",
            _endpoint(settings, (PROVIDER_ID, "status"), status),
            methods=["POST"],
        ),
    ]


def _endpoint(
    settings: Settings, fields: tuple[str, ...], handle: Handler
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            raw = await read_signed_body(request, settings.webhook_secret)
            return JSONResponse(await handle(parse_payload(raw, fields)))
        except WebhookError as error:
            return error.response()
        except NotFound as error:
            return WebhookError(404, error.code, error.message).response()
        except TallyError as error:
            return WebhookError(400, error.code, error.message).response()

    return endpoint
