"""Schema tests: documents executed in process, with the executor's fast path and without.

`run(document)` executes a document as the admin twice: with the schema's executor, and
with Strawberry's stock executor (graphql-core's per-field path for every field), and
returns both results as JSON text, key order included, so a test can say they are equal.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import ExecutionResult

from api.settings import Settings
from schema import schema
from schema.context import Context
from services.access import Principal
from services.runtime import Runtime


def context_of(settings: Settings, runtime: Runtime, principal: Principal) -> Context:
    request = Request({"type": "http", "method": "POST", "path": "/graphql", "headers": []})
    return Context(
        request=request,
        response=Response(),
        settings=settings,
        runtime=runtime,
        principal=principal,
    )


def as_json(result: ExecutionResult) -> str:
    """The result as a client would read it: data in key order, and every error's location."""
    errors = [error.formatted for error in result.errors or ()]
    return json.dumps({"data": result.data, "errors": errors})


@dataclass(frozen=True)
class BothWays:
    fast: str
    normal: str


Run = Callable[..., Awaitable[BothWays]]


@pytest.fixture
def run(
    settings: Settings, runtime: Runtime, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> Run:
    async def execute(document: str, **variables: Any) -> BothWays:
        fast = await schema.execute(
            document, variable_values=variables, context_value=context_of(settings, runtime, admin)
        )
        with monkeypatch.context() as patch:
            patch.setattr(schema, "execution_context_class", StrawberryGraphQLCoreExecutionContext)
            normal = await schema.execute(
                document,
                variable_values=variables,
                context_value=context_of(settings, runtime, admin),
            )
        return BothWays(fast=as_json(fast), normal=as_json(normal))

    return execute
