"""Hypothesis strategies for GraphQL variables: mostly well-typed, often wrong.

Values are drawn for a schema input type. Arguments and input fields the contract
gives meaning to (ids, phone numbers, amounts, payment tokens …) draw from pools of
boundary and real values, so that requests get past validation and reach the
services; ids are `Ref`s, resolved against each example's fresh `World`. Any value
may instead be junk of another JSON type, an input object may lose a required field
or gain an unknown one: the wrong types the issue asks for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any

import graphql
from hypothesis import strategies as st


@dataclass(frozen=True, slots=True)
class Ref:
    """A world's id by role ("sharedInbox", "otherMember" …), resolved per example."""

    name: str


ID_REFS = (
    "admin",
    "member",
    "personalInbox",
    "sharedInbox",
    "adminToken",
    "memberToken",
    "otherMember",
    "otherInbox",
    "otherToken",
    "never",
)
NOT_IDS = ("0", "-1", "01", "1.0", " 1", "1e3", "\uff11", "9" * 30, "")

JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JUNK = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def weighted(
    good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], odds: int
) -> st.SearchStrategy[Any]:
    """`good` `odds` times for each `bad` (`st.one_of` cannot weigh: it merges its branches)."""
    return st.integers(0, odds).flatmap(lambda i: good if i < odds else bad)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` three times in four: most requests must get past validation to test anything."""
    return weighted(good, bad, 3)


def pools(good: tuple[Any, ...], bad: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    return mostly(st.sampled_from(good), st.sampled_from(bad))


ANY_ID = mostly(st.sampled_from(ID_REFS).map(Ref), st.sampled_from(NOT_IDS))


def ids_of(*names: str) -> st.SearchStrategy[Any]:
    """Mostly the ids an argument is meant for, else any id at all."""
    return mostly(st.sampled_from(names).map(Ref), ANY_ID)


PHONES = pools(
    ("+1 415 555 0142", "(415) 555-0199", "4155550123", "+44 20 7946 0958"),
    ("+1", "555", "+1 415 555 01422", "phone", ""),
)
HINTS: dict[str, st.SearchStrategy[Any]] = {
    "inboxId": ids_of("personalInbox", "sharedInbox"),
    "memberId": ids_of("member", "admin"),
    "memberIds": st.lists(ids_of("member", "admin"), max_size=3),
    "tokenId": ids_of("memberToken", "adminToken"),
    "to": PHONES,
    "phoneNumber": PHONES,
    "personalPhoneNumber": st.none() | PHONES,
    "body": mostly(
        st.sampled_from(("Hi", "\u00e9\U0001f600", "{}[]~|^\u20ac", "x" * 161)) | st.text(),
        st.sampled_from(("", "   ", "x" * 1601, "a\x00b", "\ud800")),
    ),
    "name": mostly(st.text(max_size=50), st.sampled_from(("", " ", "x" * 201, "\udc00", "\x00"))),
    "idempotencyKey": pools(("k1", "k2"), ("", " ", "x" * 300)) | st.text(max_size=10),
    "token": pools(("tok_visa", "tok_mastercard", "tok_chargeDeclined"), ("tok_x", "")),
    "email": pools(("dee@example.com", "DEE@EXAMPLE.COM"), ("no-at-sign", "a@b", "")),
    "timezone": pools(("America/New_York", "Asia/Kolkata", "UTC"), ("Mars/Base", "")),
    "credits": pools((100, 101, 250, 1_000_000), (0, 99, 1_000_001, -100, 2**31 - 1)),
    "rechargeCredits": pools((100, 500), (99, 1_000_001)),
    "thresholdCredits": pools((0, 50, 1_000_000), (-1, 1_000_001)),
    "maxRechargesPerPeriod": pools((1, 3, 100), (0, 101)),
    "first": st.none() | pools((1, 3, 100), (0, -1, 101)),
    "after": st.none() | st.sampled_from(["", "eyJpZCI6IDF9", "1.abc"]) | st.text(max_size=30),
}
DATES = mostly(
    st.dates(date(2025, 1, 1), date(2027, 12, 31)).map(date.isoformat),
    st.dates(min_value=date(1, 1, 1)).map(date.isoformat)
    | st.sampled_from(["2026-02-30", "2026-1-5", "yesterday", ""]),
)


def _scalar(type_: graphql.GraphQLScalarType) -> st.SearchStrategy[Any]:
    if type_.name == "ID":
        return ANY_ID
    if type_.name == "Int":
        return st.integers(-(2**31), 2**31 - 1)
    if type_.name == "Boolean":
        return st.booleans()
    if type_.name == "Date":
        return DATES
    return st.text(max_size=50)


def _object(type_: graphql.GraphQLInputObjectType) -> st.SearchStrategy[dict[str, Any]]:
    required = {n: f for n, f in type_.fields.items() if graphql.is_required_input_field(f)}
    optional = {n: f for n, f in type_.fields.items() if n not in required}
    whole = st.fixed_dictionaries(
        {n: value_for(f.type, n) for n, f in required.items()},
        optional={n: value_for(f.type, n) for n, f in optional.items()},
    )
    broken = whole.map(lambda v: {**v, "unknownField": 1})
    if required:
        broken |= whole.flatmap(lambda v: st.sampled_from(sorted(v)).map(lambda k: _dropped(v, k)))
    return mostly(whole, broken)


def _dropped(value: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != key}


def value_for(type_: graphql.GraphQLInputType, name: str | None = None) -> st.SearchStrategy[Any]:
    """A JSON value for `type_`: usually of that type (a hint when `name` has one), else junk."""
    nullable = not isinstance(type_, graphql.GraphQLNonNull)
    inner = type_.of_type if isinstance(type_, graphql.GraphQLNonNull) else type_
    if name is not None and name in HINTS:
        typed = HINTS[name]
    elif isinstance(inner, graphql.GraphQLList):
        typed = st.lists(value_for(inner.of_type), max_size=3)
    elif isinstance(inner, graphql.GraphQLInputObjectType):
        typed = _object(inner)
    elif isinstance(inner, graphql.GraphQLEnumType):
        typed = pools(tuple(sorted(inner.values)), ("", "day", "NOPE"))
    else:
        typed = _scalar(graphql.assert_scalar_type(inner))
    if nullable:
        typed = st.none() | typed
    # One value in sixteen of another type entirely.
    return weighted(typed, JUNK, 15)


def resolved(value: Any, ids: dict[str, str]) -> Any:
    """`value` with every `Ref` replaced by the world's id."""
    if isinstance(value, Ref):
        return ids[value.name]
    if isinstance(value, dict):
        return {k: resolved(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v, ids) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Operation:
    """One field of the schema called with every argument as a variable."""

    document: str
    variables: st.SearchStrategy[dict[str, Any]] = dataclasses.field(repr=False)


def selection(type_: graphql.GraphQLObjectType, depth: int) -> str:
    """Every field without required arguments: leaves, and objects `depth` levels down."""
    parts = []
    for name, field in type_.fields.items():
        if any(graphql.is_required_argument(arg) for arg in field.args.values()):
            continue
        named = graphql.get_named_type(field.type)
        if graphql.is_leaf_type(named):
            parts.append(name)
        elif depth > 0 and isinstance(named, graphql.GraphQLObjectType):
            parts.append(f"{name} {{ {selection(named, depth - 1)} }}")
    return " ".join(parts) or "__typename"


def _default(argument: graphql.GraphQLArgument) -> str:
    """The argument's default for its variable, so leaving the variable out means the same."""
    node = argument.ast_node
    if node is None or node.default_value is None:
        return ""
    return f" = {graphql.print_ast(node.default_value)}"


def _operation(kind: str, path: list[str], field: graphql.GraphQLField, depth: int) -> Operation:
    args = field.args
    definitions = ", ".join(f"${name}: {arg.type}{_default(arg)}" for name, arg in args.items())
    call = ", ".join(f"{name}: ${name}" for name in args)
    named = graphql.get_named_type(field.type)
    assert isinstance(named, graphql.GraphQLObjectType)
    text = f"{path[-1]}({call}) {{ {selection(named, depth)} }}"
    for parent in reversed(path[:-1]):
        text = f"{parent} {{ {text} }}"
    required = {n: value_for(a.type, n) for n, a in args.items() if graphql.is_required_argument(a)}
    optional = {n: value_for(a.type, n) for n, a in args.items() if n not in required}
    return Operation(
        document=f"{kind} Fuzz({definitions}) {{ {text} }}",
        variables=st.fixed_dictionaries(required, optional=optional),
    )


def operations(schema: graphql.GraphQLSchema) -> list[Operation]:
    """Every mutation, and every field with arguments reachable from Query."""
    assert schema.query_type is not None
    assert schema.mutation_type is not None
    found = [
        _operation("mutation", [name], field, depth=2)
        for name, field in schema.mutation_type.fields.items()
    ]
    seen: set[tuple[str, str]] = set()
    queue: list[tuple[graphql.GraphQLObjectType, list[str]]] = [(schema.query_type, [])]
    while queue:
        type_, path = queue.pop(0)
        for name, field in type_.fields.items():
            named = graphql.get_named_type(field.type)
            if (type_.name, name) in seen or not isinstance(named, graphql.GraphQLObjectType):
                continue
            seen.add((type_.name, name))
            if field.args:
                found.append(_operation("query", [*path, name], field, depth=1))
            elif len(path) < 2:
                queue.append((named, [*path, name]))
    return found
