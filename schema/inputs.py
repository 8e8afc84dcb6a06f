"""Input objects built from precompiled field lists instead of Strawberry's generic walk.

Strawberry turns an input value into its class by resolving every field's annotation
anew on each request (`convert_argument`): for `sendMessage`'s input that walk cost
more than the send's own rule (docs/benchmarks.md). Its `from_input` hook, which
integrations such as `strawberry.pydantic` use to build their own inputs, lets the
schema do the same work once: `compile_inputs` gives every input type of the schema a
builder that knows, per field, its GraphQL name, its Python name and how its value
converts. Values that are leaves (scalars and enums, which graphql-core has already
coerced), or lists of leaves, are taken as they are; anything else is handed back to
Strawberry's own conversion, so the result is always what Strawberry would build.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING
from typing import Any

from strawberry.types.arguments import InputContext
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryObjectDefinition,
    StrawberryOptional,
    StrawberryType,
    has_object_definition,
)
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.scalar import ScalarDefinition, ScalarWrapper

Convert = Callable[[Any, InputContext, str], Any]
LEAVES = (str, int, float, bool)


def compile_inputs(types: list[object]) -> int:
    """Give each input type among `types` its compiled builder; how many were compiled."""
    compiled = 0
    for definition in types:
        if (
            isinstance(definition, StrawberryObjectDefinition)
            and definition.is_input
            and definition.from_input is None
        ):
            definition.from_input = _builder(definition)
            compiled += 1
    return compiled


def _builder(definition: StrawberryObjectDefinition) -> Callable[..., Any]:
    # As Strawberry does: a field without a default is None unless the input sets it.
    implicit_none = [
        field.python_name
        for field in definition.fields
        if field.default_value is MISSING and field.default_factory is MISSING
    ]
    # (GraphQL name, Python name, conversion) per field, made at the first build, when
    # the schema's configuration and scalars are at hand.
    plan: list[tuple[str, str, Convert]] = []

    def build(cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
        if not plan:
            plan.extend(
                (
                    context.config.name_converter.from_field(field),
                    field.python_name,
                    _converter(field.resolve_type(type_definition=definition), context),
                )
                for field in definition.fields
            )
        kwargs: dict[str, Any] = dict.fromkeys(implicit_none)
        for graphql_name, python_name, convert in plan:
            if graphql_name in value:
                kwargs[python_name] = convert(value[graphql_name], context, graphql_name)
        return cls(**kwargs)

    return build


def _converter(type_: StrawberryType | type, context: InputContext) -> Convert:
    """How a field's value converts: as it is for leaves, else by Strawberry's rules."""
    inner = type_.of_type if isinstance(type_, StrawberryOptional) else type_
    if not isinstance(type_, StrawberryMaybe) and _is_leaf(inner, context):
        return _as_it_is
    if (
        isinstance(inner, StrawberryList)
        and not isinstance(type_, StrawberryMaybe)
        and _is_leaf(inner.of_type, context)
    ):
        # A copy: graphql-core hands every request the same default list.
        return _copied
    return lambda value, context, key: context.convert(value, type_, key)


def _is_leaf(type_: object, context: InputContext) -> bool:
    scalars: Mapping[object, ScalarWrapper | ScalarDefinition] = context.scalar_registry
    return (
        type_ in LEAVES
        or type_ in scalars
        or isinstance(type_, (ScalarDefinition, ScalarWrapper, StrawberryEnumDefinition))
        or (has_enum_definition(type_) and not has_object_definition(type_))
    )


def _as_it_is(value: Any, context: InputContext, key: str) -> Any:
    return value


def _copied(value: Any, context: InputContext, key: str) -> Any:
    return None if value is None else list(value)
