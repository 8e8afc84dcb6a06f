"""Schema-wide rules: authentication and the codes of GraphQL errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    ListValueNode,
    Node,
    ObjectValueNode,
    OperationDefinitionNode,
    ValueNode,
    VariableDefinitionNode,
    VariableNode,
    Visitor,
    visit,
)
from starlette.websockets import WebSocket
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult as StreamedResult
from strawberry.types import StreamExecutionResult
from strawberry.types.graphql import OperationType

from schema.errors import camel_case
from services import tokens
from services.errors import InvalidValue, TallyError

log = logging.getLogger("tally.graphql")

INTROSPECTION_FIELDS = frozenset({"__schema", "__type", "__typename"})
# No operation to run, or one of a type the transport does not allow (a query over the
# legacy graphql-ws protocol, which only subscribes).
REQUEST_ERRORS = (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError)


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
    if isinstance(original, REQUEST_ERRORS):
        # A request Strawberry could not run (over a websocket: HTTP answers these 400).
        # The original stays, as Strawberry closes graphql-transport-ws 4400 on some.
        return GraphQLError(
            error.message,
            nodes=error.nodes,
            path=error.path,
            original_error=original,
            extensions={"code": "BAD_REQUEST"},
        )
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


def _arguments_at(document: DocumentNode, node: Node) -> list[str]:
    """The arguments whose value holds `node`, or that a variable definition feeds."""
    variable = node.variable.name.value if isinstance(node, VariableDefinitionNode) else None
    found: list[str] = []

    class Arguments(Visitor):
        def enter_argument(self, argument: ArgumentNode, *_: object) -> None:
            if variable is not None:
                used = any(
                    isinstance(value, VariableNode) and value.name.value == variable
                    for value in _values(argument.value)
                )
                if used:
                    found.append(argument.name.value)
            elif _within(node, argument):
                found.append(argument.name.value)

    visit(document, Arguments())
    return list(dict.fromkeys(found))


def _values(value: ValueNode) -> Iterator[ValueNode]:
    yield value
    if isinstance(value, ListValueNode):
        for item in value.values:
            yield from _values(item)
    elif isinstance(value, ObjectValueNode):
        for field in value.fields:
            yield from _values(field.value)


def _within(inner: Node, outer: Node) -> bool:
    if inner.loc is None or outer.loc is None:
        return False
    return outer.loc.start <= inner.loc.start and inner.loc.end <= outer.loc.end


def code_request_error(error: GraphQLError, document: DocumentNode | None) -> None:
    """Code, in place, an error graphql-core raised before executing anything.

    A value that does not fit its argument (a literal, or a variable) is the client's
    bad argument: BAD_USER_INPUT, naming the argument as the contract asks. Anything
    else wrong with the document is GRAPHQL_VALIDATION_FAILED (GRAPHQL_PARSE_FAILED
    when it did not even parse). Errors that already carry a code keep it, so coding
    twice (a validation verdict comes from the cache) changes nothing.
    """
    if error.extensions and "code" in error.extensions:
        return
    if document is None:
        parsed = not error.message.startswith("Syntax Error")
        error.extensions = {"code": "BAD_REQUEST" if parsed else "GRAPHQL_PARSE_FAILED"}
        return
    arguments = [name for node in error.nodes or () for name in _arguments_at(document, node)]
    if not arguments:
        error.extensions = {"code": "GRAPHQL_VALIDATION_FAILED"}
        return
    named = ", ".join(f"'{name}'" for name in arguments)
    error.message = f"Invalid argument {named}: {error.message}"
    error.extensions = {"code": "BAD_USER_INPUT", "argument": arguments[0]}


class ErrorCodes(SchemaExtension):
    """Code every error the client gets, on HTTP and on websockets alike.

    `on_execute` sees the one result of a query or mutation; the events of a
    subscription (and whatever a subscription's source raises) reach the client only
    through `on_stream_result`. Coding is idempotent, so a query sent over a websocket,
    which passes both, is not coded twice.
    """

    def on_execute(self) -> Iterator[None]:
        scope = _scope(self)
        if scope.get("type") == "http":
            # For the access log (api/access_log.py): which operation this request ran.
            _state(scope)["operation"] = self.execution_context.operation_name
        yield
        result = self.execution_context.result
        if isinstance(result, ExecutionResult) and result.errors:
            result.errors = self._coded(result.errors)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        if isinstance(result, StreamedResult) and result.errors:
            result.errors = self._coded(result.errors)
        yield

    def get_results(self) -> dict[str, object]:
        # The one hook that runs however the request ended: also after the parser gave
        # up, or when graphql-core refused the document or its variables, in which
        # case nothing ran and no error has a path.
        context = self.execution_context
        errors = context.pre_execution_errors or ()
        if not all(error.path is None for error in errors):
            return {}
        request_id = _state(_scope(self)).get("request_id")
        for error in errors:
            original = error.original_error
            if original is None or isinstance(original, GraphQLError) or error.nodes:
                # graphql-core's verdict on the document (a scalar's ValueError included).
                code_request_error(error, context.graphql_document)
            else:
                # An extension failed before anything ran: Strawberry answers with the
                # exception's own text, which may hold SQL or a path.
                masked = coded(error, request_id=request_id)
                error.message, error.extensions = masked.message, masked.extensions
        return {}

    def _coded(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        request_id = _state(_scope(self)).get("request_id")
        return [coded(error, request_id=request_id) for error in errors]


def _scope(extension: SchemaExtension) -> dict[str, Any]:
    request = getattr(extension.execution_context.context, "request", None)
    scope = getattr(request, "scope", None)
    return scope if isinstance(scope, dict) else {}


def _state(scope: dict[str, Any]) -> dict[str, Any]:
    """The request's (or websocket connection's) state: request id, operation, account."""
    state = scope.get("state")
    return state if isinstance(state, dict) else {}
