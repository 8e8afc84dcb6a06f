"""Query limits: depth, aliases, tokens and usage, from the settings (RULES.md "Limits").

The document checks are Strawberry's own: the validation rules of `QueryDepthLimiter`
and `MaxAliasesLimiter`, and the `max_tokens` parse option `MaxTokensLimiter` sets. One
extension applies all three per operation with the limits of the request's settings;
the rule classes are built once per limit value, so the validation cache (keyed by the
rules) keeps hitting and apps with different settings never share a cached verdict.

The usage limits depend on the data (how many members a list holds), so they are checked
while the operation runs: the extension opens a usage budget (services/usage_budget.py)
for each operation and each subscription event, and every usage report draws on it
before it reads the rollups.

A refusal is a GraphQL error (HTTP 200, `data: null`) coded QUERY_TOO_COMPLEX, with
`limit` ("depth", "aliases", "tokens", "usageReports" or "usageBuckets") and `maximum`
in its extensions. A usage refusal refuses a query or a subscription event whole; in a
mutation's payload only the refused usage fields are null, since the mutation happened.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    ExecutionResult,
    GraphQLError,
    NoSchemaIntrospectionCustomRule,
)
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.types import ExecutionResult as StreamedResult
from strawberry.types import StreamExecutionResult
from strawberry.types.graphql import OperationType

from schema.context import Context, SchemaSettings
from services.errors import UsageBudgetExceeded

CODE = "QUERY_TOO_COMPLEX"


@functools.cache
def depth_rule(max_depth: int) -> type[ASTValidationRule]:
    return QueryDepthLimiter(max_depth=max_depth).validation_rules[0]


@functools.cache
def aliases_rule(max_aliases: int) -> type[ASTValidationRule]:
    return MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules[0]


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """The limits of a context without settings (schema tests): the documented defaults."""

    introspection: bool = True
    max_query_depth: int = 15
    max_query_aliases: int = 30
    max_query_tokens: int = 10_000


def settings_of(context: object) -> SchemaSettings | QueryLimits:
    """The request's settings; the defaults for a context without any (schema tests)."""
    settings = getattr(context, "settings", None)
    return QueryLimits() if settings is None else settings


def _refused_limit(error: GraphQLError) -> str | None:
    """Which limit refused the document, from the messages of Strawberry and graphql-core."""
    message = error.message
    if "exceeds maximum operation depth" in message:
        return "depth"
    if " aliases found. Allowed: " in message:
        return "aliases"
    if "Document contains more than" in message and "tokens" in message:
        return "tokens"
    return None


class QueryLimitsExtension(SchemaExtension):
    """Refuse documents deeper, with more aliases or longer than the settings allow."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        settings = settings_of(context.context)
        context.parse_options["max_tokens"] = settings.max_query_tokens
        context.validation_rules = (
            *context.validation_rules,
            depth_rule(settings.max_query_depth),
            aliases_rule(settings.max_query_aliases),
            # `__typename` stays allowed: clients need it to read unions and fragments.
            *(() if settings.introspection else (NoSchemaIntrospectionCustomRule,)),
        )
        if isinstance(context.context, Context):
            context.context.open_usage_budget()
        yield

    def on_execute(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if isinstance(result, ExecutionResult):
            read = self.execution_context.operation_type is not OperationType.MUTATION
            _refuse_over_budget(result, whole=read)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        # A subscription's events are its responses: each gets a budget of its own.
        # (A query or mutation over a websocket was handled by on_execute already.)
        if self.execution_context.operation_type is not OperationType.SUBSCRIPTION:
            yield
            return
        if isinstance(result, StreamedResult):
            _refuse_over_budget(result, whole=True)
        yield
        context = self.execution_context.context
        if isinstance(context, Context):
            context.open_usage_budget()

    def get_results(self) -> dict[str, object]:
        # The one hook that still runs after the parser gave up (too many tokens).
        settings = settings_of(self.execution_context.context)
        maxima = {
            "depth": settings.max_query_depth,
            "aliases": settings.max_query_aliases,
            "tokens": settings.max_query_tokens,
        }
        for error in self.execution_context.pre_execution_errors or ():
            limit = _refused_limit(error)
            if limit is not None:
                code = {"code": CODE, "limit": limit, "maximum": maxima[limit]}
                error.extensions = {**(error.extensions or {}), **code}
        return {}


def _refuse_over_budget(result: ExecutionResult | StreamedResult, *, whole: bool) -> None:
    """Give usage refusals their limit; ``whole``: refuse the result whole for the first."""
    refusals = [
        (error, error.original_error)
        for error in result.errors or ()
        if isinstance(error.original_error, UsageBudgetExceeded)
    ]
    if not refusals:
        return
    for error, refusal in refusals:
        code = {"code": CODE, "limit": refusal.limit, "maximum": refusal.maximum}
        error.extensions = {**(error.extensions or {}), **code}
    if whole:
        # Like the other limits: the request is refused, not answered in part.
        error, refusal = refusals[0]
        result.data = None
        result.errors = [GraphQLError(refusal.message, extensions=error.extensions)]
