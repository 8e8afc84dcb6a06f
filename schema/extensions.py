"""Schema-wide rules: authentication and the codes of GraphQL errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

from graphql import ExecutionResult, GraphQLError, OperationDefinitionNode
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from schema.errors import camel_case
from services import tokens
from services.errors import InvalidValue, TallyError

log = logging.getLogger("tally.graphql")

INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})


def _is_introspection_only(extension: SchemaExtension) -> bool:
    document = extension.execution_context.graphql_document
    if document is None:
        return False
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            for selection in definition.selection_set.selections:
                name = getattr(selection, "name", None)
                if name is None or name.value not in INTROSPECTION_FIELDS:
                    return False
    return True


class Authentication(SchemaExtension):
    """Refuse every operation without a valid token, except pure introspection (GraphiQL's docs)."""

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context.context
        principal = getattr(context, "principal", None)
        if (
            principal is not None
            and isinstance(getattr(context, "request", None), WebSocket)
            and not await tokens.is_live(principal.token_id)
        ):
            # A websocket's token was checked once, at connection_init; revoking it must
            # stop the operations sent over the open connection too, at once.
            context.principal = principal = None
        if principal is None and not _is_introspection_only(self):
            error = GraphQLError(
                "A valid API token is required: send 'Authorization: Bearer <token>'.",
                extensions={"code": "UNAUTHENTICATED"},
            )
            if self.execution_context.operation_type is OperationType.SUBSCRIPTION:
                # Strawberry starts a subscription whatever the result set here; an error
                # raised here is what it answers instead.
                raise error
            self.execution_context.result = ExecutionResult(data=None, errors=[error])
        yield


def coded(error: GraphQLError, *, request_id: str | None = None) -> GraphQLError:
    """Give a domain error its contract code; hide anything unexpected behind a generic message."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return error
    if isinstance(original, InvalidValue):
        return _bad_argument(error, original)
    if isinstance(original, TallyError):
        return GraphQLError(
            original.message,
            nodes=error.nodes,
            path=error.path,
            original_error=original,
            extensions={"code": original.code},
        )
    # The request id ties the client's report to this log line.
    log.error("unexpected error in %s (request %s)", error.path, request_id, exc_info=original)
    extensions: dict[str, object] = {"code": "INTERNAL_SERVER_ERROR"}
    if request_id is not None:
        extensions["requestId"] = request_id
    return GraphQLError(
        "Internal server error.", nodes=error.nodes, path=error.path, extensions=extensions
    )


def _bad_argument(error: GraphQLError, original: InvalidValue) -> GraphQLError:
    """A query argument at fault (mutations report theirs in userErrors, never here)."""
    argument = None if original.field is None else camel_case(original.field.split(".")[0])
    named = "Invalid argument" if argument is None else f"Invalid argument '{argument}'"
    return GraphQLError(
        f"{named}: {original.message}",
        nodes=error.nodes,
        path=error.path,
        original_error=original,
        extensions={"code": "BAD_USER_INPUT", "argument": argument},
    )


class ErrorCodes(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        scope = getattr(getattr(self.execution_context.context, "request", None), "scope", {})
        state = scope.get("state", {}) if scope.get("type") == "http" else {}
        # For the access log (api/access_log.py): which operation this request ran.
        state["operation"] = self.execution_context.operation_name
        yield
        result = self.execution_context.result
        if isinstance(result, ExecutionResult) and result.errors:
            request_id = state.get("request_id")
            result.errors = [coded(error, request_id=request_id) for error in result.errors]
