"""Query limits: depth, aliases and tokens, from the settings (RULES.md "Limits").

The checks are Strawberry's own: the validation rules of `QueryDepthLimiter` and
`MaxAliasesLimiter`, and the `max_tokens` parse option `MaxTokensLimiter` sets. One
extension applies all three per operation with the limits of the request's settings;
the rule classes are built once per limit value, so the validation cache (keyed by the
rules) keeps hitting and apps with different settings never share a cached verdict.

A refusal is a GraphQL error (HTTP 200, `data: null`) coded QUERY_TOO_COMPLEX, with
`limit` ("depth", "aliases" or "tokens") and `maximum` in its extensions.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension

from api.settings import Settings

CODE = "QUERY_TOO_COMPLEX"


@functools.cache
def depth_rule(max_depth: int) -> type[ASTValidationRule]:
    return QueryDepthLimiter(max_depth=max_depth).validation_rules[0]


@functools.cache
def aliases_rule(max_aliases: int) -> type[ASTValidationRule]:
    return MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules[0]


def settings_of(context: object) -> Settings:
    """The request's settings; the defaults for a context without any (schema tests)."""
    settings = getattr(context, "settings", None)
    return settings if isinstance(settings, Settings) else Settings()


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
        )
        yield

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
