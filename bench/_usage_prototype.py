"""A measurement prototype, NOT part of Tally: `tally serve` with two changes monkeypatched in.

    .venv/bin/python bench/usage.py --serve-with bench/_usage_prototype.py

bench/usage.py then starts the server as `python bench/_usage_prototype.py serve …`. This
file patches Tally in memory and calls `api.cli.main`. It shows what the fixes proposed in
docs/benchmarks.md ("Usage reports") would gain. Tally itself would need the real fixes in
schema/ and api/. BENCH_PROTOTYPE picks the changes (comma-separated, default
"plain,freeze"):

* ``plain``: selections made only of resolver-less fields are completed without
  graphql-core's per-field machinery. A selection qualifies when every field is a
  Strawberry *basic* field (no resolver, no field extension, no arguments) and its type is
  a scalar, an enum, or an object or list of objects that qualify in turn, with no
  ``is_type_of`` and no resolve middleware. Then the result is built straight from
  ``getattr`` and the leaf type's ``serialize``. @skip/@include and fragments are already
  resolved by graphql-core's ``collect_subfields``, which is also what finds the
  sub-selections. Anything unusual falls back to the normal path for that object, which
  then raises the proper located error: a None for a non-null type, or any exception.
  This goes in the schema's ``execution_context_class`` (schema/subscriptions.py's
  ``SubscriptionExecutor``), as an override of ``execute_fields``.
* ``freeze``: ``gc.collect(); gc.freeze()`` once everything is imported, so the
  collector's full passes stop walking the schema, the ORM and the modules. A 731-bucket
  report allocates enough to trigger them. This goes in api/app.py's lifespan startup.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from typing import Any

from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, is_leaf_type
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

Complete = Callable[[Any], Any]
BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF


class _Fallback(Exception):
    """The fast path met something only the normal path reports properly."""


def _complete_type(executor: Any, gtype: Any, details: Any) -> Complete | None:
    """value -> completed value for a plain type, or None when the type is not plain."""
    nonnull = isinstance(gtype, GraphQLNonNull)
    inner = gtype.of_type if nonnull else gtype
    if is_leaf_type(inner):
        serialize = inner.serialize

        def leaf(value: Any) -> Any:
            if value is None:
                if nonnull:
                    raise _Fallback
                return None
            serialized = serialize(value)
            if serialized is None:
                raise _Fallback
            return serialized

        return leaf
    if isinstance(inner, GraphQLList):
        item = _complete_type(executor, inner.of_type, details)
        if item is None:
            return None

        def many(value: Any) -> Any:
            if value is None:
                if nonnull:
                    raise _Fallback
                return None
            if not isinstance(value, list | tuple):
                # Iterators could be consumed only once: the normal path takes them.
                raise _Fallback
            return [item(v) for v in value]

        return many
    if isinstance(inner, GraphQLObjectType):
        if inner.is_type_of is not None:
            return None
        grouped, defer_usages, *_ = executor.collect_subfields(inner, details)
        if defer_usages:
            return None
        build = _build_fields(executor, inner, grouped)
        if build is None:
            return None

        def obj(value: Any) -> Any:
            if value is None:
                if nonnull:
                    raise _Fallback
                return None
            return build(value)

        return obj
    return None


def _build_fields(
    executor: Any, parent: GraphQLObjectType, grouped: Any
) -> Callable[[Any], dict[str, Any]] | None:
    steps: list[tuple[str, str | None, Any]] = []
    for response_name, details in grouped.items():
        node = details[0].node
        name = node.name.value
        if name == "__typename":
            steps.append((response_name, None, parent.name))
            continue
        field_def = parent.fields.get(name)
        if field_def is None or node.arguments or field_def.args:
            return None
        definition = field_def.extensions.get(BACKREF)
        if not (isinstance(definition, StrawberryField) and definition.is_basic_field):
            return None
        complete = _complete_type(executor, field_def.type, details)
        if complete is None:
            return None
        steps.append((response_name, definition.python_name, complete))

    def build(source: Any) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for response_name, attribute, complete in steps:
            if attribute is None:
                result[response_name] = complete
            else:
                result[response_name] = complete(getattr(source, attribute))
        return result

    return build


def patch_plain_fields() -> None:
    from schema.subscriptions import SubscriptionExecutor

    original = SubscriptionExecutor.execute_fields

    def execute_fields(
        self: Any,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Any,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        manager = self.middleware_manager
        if manager is None or not getattr(manager, "middlewares", None):
            # Per request: the grouped field sets are memoised per request by graphql-core,
            # so a list of 731 buckets compiles its bucket selection once. Keyed by
            # identity, with the set kept alive so that its id cannot be reused.
            plans = self.__dict__.setdefault("_bench_plain_plans", {})
            entry = plans.get(id(grouped_field_set))
            if entry is None:
                entry = (grouped_field_set, _build_fields(self, parent_type, grouped_field_set))
                plans[id(grouped_field_set)] = entry
            build = entry[1]
            if build is not None:
                try:
                    return build(source_value)
                except Exception:  # noqa: S110 - the normal path below reports it
                    pass
        return original(self, parent_type, source_value, path, grouped_field_set, position_context)

    SubscriptionExecutor.execute_fields = execute_fields  # type: ignore[method-assign]


def main() -> int:
    wanted = set(os.environ.get("BENCH_PROTOTYPE", "plain,freeze").split(","))
    if "plain" in wanted:
        patch_plain_fields()
    import api.app  # noqa: F401 - everything the server imports, before the freeze
    from api.cli import main as tally

    if "freeze" in wanted:
        gc.collect()
        gc.freeze()
    return tally(sys.argv[1:])


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    raise SystemExit(main())
