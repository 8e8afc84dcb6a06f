"""The GraphQL schema: one module per area, merged here."""

from __future__ import annotations

import strawberry
from strawberry.tools import merge_types

from schema.accounts import AccountMutation, AccountQuery
from schema.extensions import Authentication, ErrorCodes
from schema.inboxes import InboxMutation
from schema.members import MemberMutation
from schema.tokens import TokenMutation

Query = merge_types("Query", (AccountQuery,))
Mutation = merge_types("Mutation", (AccountMutation, MemberMutation, InboxMutation, TokenMutation))

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    extensions=[Authentication, ErrorCodes],
)
