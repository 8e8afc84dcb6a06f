"""The GraphQL endpoint: Strawberry's ASGI view with Tally's authentication."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from api.context import Context
from api.runtime import Runtime
from api.settings import Settings
from schema import schema
from services import tokens
from services.access import Principal


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
        )
        self.settings = settings
        self.runtime = runtime

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        principal = None
        if isinstance(request, Request):
            principal = await principal_for(request.headers.get("authorization"))
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
        return None
