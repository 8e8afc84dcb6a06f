"""The GraphQL endpoint: Strawberry's ASGI view with Tally's authentication.

Websockets authenticate once, in `connection_init`. Their token is then watched: a
revoked token closes the connection with 4403 within `REVOCATION_CHECK_SECONDS`
(services/live.py), and every operation sent meanwhile is refused
(schema/extensions.py). Idle connections are kept alive by pings: uvicorn's
websocket ping frames (both protocols, `tally serve`), and the legacy graphql-ws
protocol's own "ka" messages, which its clients expect.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from api.access_log import request_state
from api.context import Context
from api.runtime import Runtime
from api.settings import Settings
from schema import schema
from services import tokens
from services.access import Principal

# subscriptions-transport-ws clients drop a connection after 30 s without a "ka".
LEGACY_KEEP_ALIVE_SECONDS = 15.0
REVOKED_CLOSE_CODE = 4403
UNWATCH = "tally.unwatch_token"


def bearer_secret(header: object) -> str | None:
    """The secret of an `Authorization: Bearer <secret>` value, or None."""
    if not isinstance(header, str):
        return None
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


async def principal_for(header: object) -> Principal | None:
    secret = bearer_secret(header)
    return None if secret is None else await tokens.authenticate(secret)


class TallyGraphQL(GraphQL[Context, None]):
    def __init__(self, *, settings: Settings, runtime: Runtime) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allowed_origins=settings.allowed_origins,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            keep_alive=True,
            keep_alive_interval=LEGACY_KEEP_ALIVE_SECONDS,
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

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        principal = None
        if isinstance(request, Request):
            principal = await principal_for(request.headers.get("authorization"))
            if principal is not None:
                request_state(request.scope)["account_id"] = principal.account_id
        return Context(
            request=request,
            response=response,
            settings=self.settings,
            runtime=self.runtime,
            principal=principal,
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        params = context.connection_params or {}
        principal = await principal_for(params.get("authorization") or params.get("Authorization"))
        if principal is None:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED"})
        context.principal = principal
        websocket = context.request
        if isinstance(websocket, WebSocket):

            async def close() -> None:
                await websocket.close(code=REVOKED_CLOSE_CODE, reason="Token revoked")

            websocket.scope[UNWATCH] = self.runtime.token_watch.watch(principal.token_id, close)
        return None
