"""Every input type builds, through its compiled builder, what Strawberry itself builds."""

from __future__ import annotations

from datetime import date
from enum import Enum
from typing import Any

import pytest
from strawberry.types.arguments import convert_argument
from strawberry.types.base import (
    StrawberryList,
    StrawberryObjectDefinition,
    StrawberryOptional,
)
from strawberry.types.enum import StrawberryEnumDefinition

from schema import schema

INPUTS = [
    concrete.definition
    for concrete in schema.schema_converter.type_map.values()
    if isinstance(concrete.definition, StrawberryObjectDefinition) and concrete.definition.is_input
]


def sample(type_: Any, *, everything: bool) -> Any:
    """A value of `type_` as graphql-core hands it to Strawberry (leaves already coerced)."""
    if isinstance(type_, StrawberryOptional):
        return sample(type_.of_type, everything=everything) if everything else None
    if isinstance(type_, StrawberryList):
        return [sample(type_.of_type, everything=everything) for _ in range(2)]
    if isinstance(type_, StrawberryEnumDefinition):
        return next(iter(type_.wrapped_cls))
    if isinstance(type_, type) and issubclass(type_, Enum):
        return next(iter(type_))
    definition = getattr(type_, "__strawberry_definition__", None)
    if isinstance(definition, StrawberryObjectDefinition):
        return input_value(definition, everything=everything)
    if type_ is date:
        return date(2026, 1, 15)
    if type_ in (int, bool):
        return type_(1)
    return "17"


def input_value(definition: StrawberryObjectDefinition, *, everything: bool) -> dict[str, Any]:
    config = schema.config
    value = {}
    for field in definition.fields:
        type_ = field.resolve_type(type_definition=definition)
        if everything or not isinstance(type_, StrawberryOptional):
            value[config.name_converter.from_field(field)] = sample(type_, everything=everything)
    return value


@pytest.mark.parametrize("definition", INPUTS, ids=lambda d: d.name)
@pytest.mark.parametrize("everything", [True, False], ids=["all-fields", "required-only"])
def test_an_input_builds_as_strawberry_builds_it(
    definition: StrawberryObjectDefinition, everything: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an input value
    value = input_value(definition, everything=everything)
    registry = schema.schema_converter.scalar_registry
    # when it is built by the compiled builder, and by Strawberry's own walk
    compiled = convert_argument(value, definition.origin, registry, schema.config)
    for other in INPUTS:
        monkeypatch.setattr(other, "from_input", None)
    generic = convert_argument(value, definition.origin, registry, schema.config)
    # then both are the same object
    assert compiled == generic
    assert type(compiled) is definition.origin


def test_every_input_type_has_a_compiled_builder() -> None:
    assert INPUTS
    assert all(definition.from_input is not None for definition in INPUTS)
