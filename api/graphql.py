"""The GraphQL endpoint: Strawberry's ASGI view with Tally's authentication.

Websockets authenticate once, in `connection_init`. Their token is then watched: a
revoked token closes the connection with 4403 within `REVOCATION_CHECK_SECONDS`
(services/live.py), and every operation sent meanwhile is refused
(schema/extensions.py). Idle connections are kept alive by pings: uvicorn's
websocket ping frames (both protocols, `tally serve`), and the legacy graphql-ws
protocol's own "ka" messages, which its clients expect.

Every operation sent over a websocket (a subscribe or start message) counts against
the rate limit of its connection's token, with HTTP requests (api/ratelimit.py), and
a connection runs at most MAX_OPERATIONS_PER_CONNECTION at once. An operation refused
for either gets an error message for its id, coded RATE_LIMITED (with `retryAfter`
seconds) or TOO_MANY_OPERATIONS; the connection stays open. Malformed messages close a
graphql-transport-ws connection with 4400. The legacy protocol has no such close code:
it answers a JSON message it cannot use with a `connection_error` message, as the
subscriptions-transport-ws server does, and (Strawberry's choice) ignores text that is
not JSON and closes with 1002 on a binary message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    Message as TransportMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage,
    OperationMessage,
    StartMessage,
)
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from api.access_log import count_operation, request_state
from api.client_address import client_address
from api.graphiql import graphiql_page
from api.graphql_media import is_request_error, mark_request_error
from api.ratelimit import CODE as RATE_LIMITED
from api.ratelimit import bearer_secret, operation_limiter, too_many_message
from api.settings import Settings
from schema import schema
from schema.context import Context
from services import tokens
from services.access import Principal
from services.runtime import Runtime

# subscriptions-transport-ws clients drop a connection after 30 s without a "ka".
LEGACY_KEEP_ALIVE_SECONDS = 15.0
REVOKED_CLOSE_CODE = 4403
TOO_MANY_INITIALISATIONS_CLOSE_CODE = 4429
UNWATCH = "tally.unwatch_token"
# Subscriptions, queries and mutations in flight on one connection. The SPA runs one or
# two; the cap bounds what a connection can hold (tasks, documents, broker queues).
MAX_OPERATIONS_PER_CONNECTION = 100
TOO_MANY_OPERATIONS = "TOO_MANY_OPERATIONS"
# Clients use counters or UUIDs; an id is echoed in every message of its operation.
MAX_OPERATION_ID_LENGTH = 128
OPERATION_MESSAGES = frozenset({"subscribe", "start"})
ID_MESSAGES = frozenset({"complete", "stop"})
LEGACY_MESSAGES = frozenset({"connection_init", "connection_terminate", "start", "stop"})


def connection_secret(params: Mapping[str, object] | None) -> str | None:
    """The bearer secret of a websocket's connection_init payload, or None."""
    params = params or {}
    return bearer_secret(params.get("authorization") or params.get("Authorization"))


async def principal_for(secret: str | None, runtime: Runtime) -> Principal | None:
    return None if secret is None else await tokens.authenticate(secret, cache=runtime.tokens)


def message_problem(message: object) -> str | None:
    """What makes a client's websocket message malformed, or None when nothing does."""
    if not isinstance(message, dict):
        return "Messages must be JSON objects."
    kind = message.get("type")
    if not isinstance(kind, str):
        return "Messages need a string 'type'."
    if kind not in OPERATION_MESSAGES | ID_MESSAGES:
        return None
    op_id = message.get("id")
    if not isinstance(op_id, str) or len(op_id) > MAX_OPERATION_ID_LENGTH:
        return f"An operation 'id' is a string of at most {MAX_OPERATION_ID_LENGTH} characters."
    if kind in OPERATION_MESSAGES:
        return _payload_problem(message.get("payload"))
    return None


def _payload_problem(payload: object) -> str | None:
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return "An operation's 'payload' is an object with a string 'query'."
    if not isinstance(payload.get("variables", {}), dict | None):
        return "An operation's 'variables' are an object."
    if not isinstance(payload.get("operationName", ""), str | None):
        return "An operation's 'operationName' is a string."
    return None


async def refusal(context: Context, *, running: int) -> GraphQLError | None:
    """Why an operation sent over a websocket may not start now, or None when it may."""
    scope = context.request.scope
    count_operation(scope)
    limiter = operation_limiter(scope)
    wait = None
    if limiter is not None:
        wait = await limiter.admit(connection_secret(context.connection_params))
    if wait is not None:
        extensions = {"code": RATE_LIMITED, "retryAfter": wait}
        return GraphQLError(too_many_message(wait), extensions=extensions)
    if running >= MAX_OPERATIONS_PER_CONNECTION:
        message = (
            f"A connection runs at most {MAX_OPERATIONS_PER_CONNECTION} operations at once:"
            " complete one first."
        )
        extensions = {"code": TOO_MANY_OPERATIONS, "maximum": MAX_OPERATIONS_PER_CONNECTION}
        return GraphQLError(message, extensions=extensions)
    return None


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws, with malformed messages closed 4400 and operations limited."""

    async def handle_message(self, message: TransportMessage) -> None:
        problem = message_problem(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        # Before connection_ack (4401) and for an id in use (4409) Strawberry closes.
        if self.connection_acknowledged and message["id"] not in self.operations:
            refused = await refusal(self.context, running=len(self.operations))
            if refused is not None:
                await self.send_message(
                    {"id": message["id"], "type": "error", "payload": [refused.formatted]}
                )
                return
        await super().handle_subscribe(message)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """graphql-ws (subscriptions-transport-ws), with malformed messages answered and
    operations limited."""

    async def handle_message(self, message: OperationMessage) -> None:
        problem = message_problem(message)
        if problem is None and message["type"] not in LEGACY_MESSAGES:
            problem = f"Unknown message type: {message['type'][:MAX_OPERATION_ID_LENGTH]}"
        if problem is not None:
            await self.send_message({"type": "connection_error", "payload": {"message": problem}})
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.connection_acknowledged:
            # As graphql-transport-ws does; Strawberry would authenticate (and watch the
            # token, and start a keep-alive) once more, leaking the first.
            reason = "Too many initialisation requests"
            await self.send_message({"type": "connection_error", "payload": {"message": reason}})
            await self.websocket.close(code=TOO_MANY_INITIALISATIONS_CLOSE_CODE, reason=reason)
            return
        await super().handle_connection_init(message)

    async def handle_start(self, message: StartMessage) -> None:
        # Before connection_ack Strawberry closes 4401; a start with an id in use
        # replaces that operation, so it does not count as one more.
        if self.connection_acknowledged:
            running = len(self.tasks) - (message["id"] in self.tasks)
            refused = await refusal(self.context, running=running)
            if refused is not None:
                await self.send_message(
                    {"type": "error", "id": message["id"], "payload": refused.formatted}
                )
                return
        await super().handle_start(message)


class TallyGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, *, settings: Settings, runtime: Runtime) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allowed_origins=settings.allowed_origins,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            keep_alive=True,
            keep_alive_interval=LEGACY_KEEP_ALIVE_SECONDS,
            max_subscriptions_per_connection=MAX_OPERATIONS_PER_CONNECTION,
        )
        self.settings = settings
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # The token watch of a websocket (on_ws_connect) ends with the connection.
            unwatch = scope.get(UNWATCH)
            if unwatch is not None:
                unwatch()

    async def render_graphql_ide(self, request: Request) -> Response:
        return graphiql_page()

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        processed = await super().process_result(request, result)
        if is_request_error(processed):
            mark_request_error(request.scope)
        return processed

    def decode_json(self, data: str | bytes) -> object:
        # JSON between systems is UTF-8 (RFC 8259). json.loads would guess UTF-16 or -32
        # from the first bytes, and let a UnicodeDecodeError through (a 500); as a
        # JSONDecodeError it is Strawberry's 400 "Unable to parse request body as JSON".
        try:
            # orjson for the common case; anything it refuses is decided by the json module
            # below, as before (integers past 64 bits, NaN, bad UTF-8 and deep nesting).
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as error:
                raise json.JSONDecodeError("Not UTF-8", "", error.start) from None
        try:
            return json.loads(data)
        except json.JSONDecodeError:
            raise
        except (ValueError, RecursionError) as error:
            # An integer of more than 4,300 digits (Python's int parsing limit), or arrays
            # or objects nested deeper than the interpreter's recursion limit.
            raise json.JSONDecodeError(str(error), data, 0) from None

    def encode_json(self, data: object) -> str:
        # orjson: a 731-bucket usage report is 122 KB of JSON, and json.dumps took 14-17%
        # of its server time (docs/benchmarks.md). Non-ASCII text is written as UTF-8
        # rather than \u escapes; both are the same JSON. A str, not bytes: Strawberry
        # sends bytes over a websocket as binary frames, which browsers' graphql-ws
        # clients cannot parse.
        try:
            return orjson.dumps(data).decode()
        except TypeError:
            # orjson refuses unpaired surrogates, which json.loads lets into a request (a
            # segmentInfo body "\ud800" is echoed in nonGsmCharacters): a 500 before. The
            # json module writes them as \u escapes, which is still JSON.
            return json.dumps(data)

    def parse_json(self, data: str | bytes) -> Any:
        # Strawberry reads fields of the parsed body with .get(): a body that is a JSON
        # string, number, boolean or null would raise there (a 500).
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "The request body must be a JSON object.")
        return parsed

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        context = Context(
            request=request, response=response, settings=self.settings, runtime=self.runtime
        )
        if isinstance(request, Request):
            secret = bearer_secret(request.headers.get("authorization"))
            principal = await principal_for(secret, self.runtime)
            if principal is not None:
                context.principal = self._with_address(principal, request.scope)
                request_state(request.scope)["account_id"] = principal.account_id
        return context

    def _with_address(self, principal: Principal, scope: Scope) -> Principal:
        """The principal with the client's address, which the audit log records."""
        return replace(principal, ip=client_address(scope, self.settings.trusted_proxies))

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, Any] | None:
        principal = await principal_for(connection_secret(context.connection_params), self.runtime)
        if principal is None:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED"})
        websocket = context.request
        principal = context.principal = self._with_address(principal, websocket.scope)
        if isinstance(websocket, WebSocket):
            request_state(websocket.scope)["account_id"] = principal.account_id

            async def close() -> None:
                await websocket.close(code=REVOKED_CLOSE_CODE, reason="Token revoked")

            websocket.scope[UNWATCH] = self.runtime.token_watch.watch(principal.token_id, close)
        return None
