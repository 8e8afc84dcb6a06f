"""API tokens: createApiToken and revokeApiToken."""

from __future__ import annotations

from typing import Any

import strawberry

from schema.context import Context
from schema.errors import UserError, reports_user_errors
from schema.ids import to_id, to_key
from services import tokens


@strawberry.input
class CreateApiTokenInput:
    member_id: strawberry.ID
    name: str


@strawberry.type
class CreateApiTokenPayload:
    token: str | None = strawberry.field(default=None, description="The secret, shown once.")
    token_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RevokeApiTokenInput:
    token_id: strawberry.ID


@strawberry.type
class RevokeApiTokenPayload:
    revoked: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class TokenMutation:
    @strawberry.mutation(
        description="ADMIN: a token for any member of the account; members may create their own."
    )
    @reports_user_errors
    async def create_api_token(
        self, info: strawberry.Info[Context, Any], input: CreateApiTokenInput
    ) -> CreateApiTokenPayload:
        issued = await tokens.create_token(
            actor=info.context.actor,
            member_id=to_key(input.member_id, field="member_id"),
            name=input.name,
            clock=info.context.clock,
        )
        return CreateApiTokenPayload(token=issued.secret, token_id=to_id(issued.token.id))

    @strawberry.mutation
    @reports_user_errors
    async def revoke_api_token(
        self, info: strawberry.Info[Context, Any], input: RevokeApiTokenInput
    ) -> RevokeApiTokenPayload:
        revoked = await tokens.revoke_token(
            actor=info.context.actor,
            token_id=to_key(input.token_id, field="token_id"),
            runtime=info.context.runtime,
        )
        return RevokeApiTokenPayload(revoked=revoked)
