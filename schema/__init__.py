"""The GraphQL schema: one module per area, merged here."""

from __future__ import annotations

from datetime import date

import strawberry
from graphql import GraphQLError
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from schema.accounts import AccountMutation, AccountQuery
from schema.credits import CreditsMutation
from schema.documents import DOCUMENT_CACHE_SIZE, DocumentParserCache, DocumentValidationCache
from schema.exports import ExportMutation
from schema.extensions import Authentication, ErrorCodes
from schema.inboxes import InboxMutation
from schema.inputs import compile_inputs
from schema.limits import QueryLimitsExtension
from schema.members import MemberMutation
from schema.messages import MessageMutation, MessageQuery
from schema.notices import AlertsMutation
from schema.scalars import Date
from schema.subscriptions import Subscription, SubscriptionExecutor
from schema.tokens import TokenMutation
from schema.webhook_endpoints import WebhookEndpointMutation
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
        AlertsMutation,
        WebhookEndpointMutation,
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


schema = TallySchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    execution_context_class=SubscriptionExecutor,
    scalar_overrides={date: Date},
    extensions=[
        lambda: DocumentParserCache(maxsize=DOCUMENT_CACHE_SIZE),
        DocumentValidationCache,
        QueryLimitsExtension,
        Authentication,
        ErrorCodes,
    ],
)
compile_inputs([concrete.definition for concrete in schema.schema_converter.type_map.values()])
