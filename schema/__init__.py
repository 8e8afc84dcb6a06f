"""The GraphQL schema: one module per area, merged here."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, SchemaExtension, ValidationCache
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from schema.accounts import AccountMutation, AccountQuery
from schema.credits import CreditsMutation
from schema.exports import ExportMutation
from schema.extensions import Authentication, ErrorCodes
from schema.inboxes import InboxMutation
from schema.limits import QueryLimitsExtension
from schema.members import MemberMutation
from schema.messages import MessageMutation, MessageQuery
from schema.scalars import Date
from schema.subscriptions import Subscription, SubscriptionExecutor
from schema.tokens import TokenMutation
from services.errors import TallyError

Query = merge_types("Query", (AccountQuery, MessageQuery))
Mutation = merge_types(
    "Mutation",
    (
        MessageMutation,
        CreditsMutation,
        AccountMutation,
        MemberMutation,
        InboxMutation,
        TokenMutation,
        ExportMutation,
    ),
)


class TallySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # A NOT_FOUND id, a bad argument or a FORBIDDEN field is an answer, not an incident:
        # logging each with a traceback would bury the errors that are.
        # Parse, validation, limit and authentication refusals carry no original error.
        unexpected = [
            e
            for e in errors
            if e.original_error is not None
            and not isinstance(e.original_error, TallyError | GraphQLError)
        ]
        super().process_errors(unexpected, execution_context)


# Validating and parsing the document took a third of the server's CPU per sendMessage
# (about 2.3 of 7 ms; docs/benchmarks.md). The SPA sends a fixed set of documents with
# variables, so both are cached per document text, LRU-bounded: clients sending ever-new
# texts only evict entries, never grow memory. The validation cache is keyed by the parsed
# document object, which only the parser cache keeps the same across requests.
DOCUMENT_CACHE_SIZE = 512
# An SPA's documents are a few KB. A document may be up to the 1 MiB body limit (within
# the token limit, comments are free): 512 of those would pin half a GB, so longer ones
# are parsed and validated each time instead of kept.
MAX_CACHED_DOCUMENT_CHARACTERS = 32 * 1024


def _cacheable(extension: SchemaExtension) -> bool:
    query = extension.execution_context.query
    return query is None or len(query) <= MAX_CACHED_DOCUMENT_CHARACTERS


class DocumentParserCache(ParserCache):
    def on_parse(self) -> Iterator[None]:
        if _cacheable(self):
            yield from super().on_parse()
        else:
            yield


class DocumentValidationCache(ValidationCache):
    def on_validate(self) -> Iterator[None]:
        if _cacheable(self):
            yield from super().on_validate()
        else:
            yield


schema = TallySchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    execution_context_class=SubscriptionExecutor,
    scalar_overrides={date: Date},
    extensions=[
        lambda: DocumentParserCache(maxsize=DOCUMENT_CACHE_SIZE),
        lambda: DocumentValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
        QueryLimitsExtension,
        Authentication,
        ErrorCodes,
    ],
)
