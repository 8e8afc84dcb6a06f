"""The schema's executor: selections of plain attributes completed without per-field work.

graphql-core executes each field on its own: it builds a resolve info, calls the resolver,
checks for an awaitable and completes the value, about 3.5 µs a field. A 731-bucket usage
report has some 6,600 fields, so that was 25 ms of a 30 ms request (docs/benchmarks.md).
Nearly all of them are Strawberry *basic* fields: no resolver, no extension, no argument,
only ``getattr``.

So when every field of a selection is plain (``__typename``, or a basic field whose type
is a scalar, an enum, an object with no ``is_type_of`` whose own selection is plain, or a
list of those), the selection is compiled into a function that builds the result straight
from ``getattr`` and each leaf type's ``coerce_output_value``.
``collect_subfields`` has already applied ``@skip``/``@include``, fragments and aliases.
The function gives up on anything the normal path would report or treat differently: a
None in a non-null position, a value the coercer refuses, a list that is not a list or a
tuple (an iterator can be read only once). Any exception sends the whole object down the
normal path, which then raises the error with its exact path and message. Resolve
middleware, ``@defer``, ``@stream`` and a default resolver other than ``getattr`` keep the
normal path throughout.

A selection is compiled once per document, not per request (that took about 0.3 ms of a
2.5 ms 90-day report), wherever the result cannot differ: the parser cache
(schema/documents.py) hands every request for a document the same nodes, and a document
whose selections carry no directive collects the same fields whatever its variables.
Others are compiled per request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from operator import attrgetter
from typing import Any, cast

from graphql import (
    GRAPHQL_MAX_INT,
    GRAPHQL_MIN_INT,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLStreamDirective,
    GraphQLString,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    is_leaf_type,
)
from graphql.execution import Executor
from graphql.execution.collect_fields import FieldDetailsList, GroupedFieldSet
from graphql.execution.incremental.incremental_executor import DeliveryGroupMap
from graphql.pyutils import AwaitableOrValue, Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

from schema.documents import DOCUMENT_CACHE_SIZE, MAX_CACHED_DOCUMENT_CHARACTERS, Kept

__all__ = ["PlainFieldsExecutor"]

# Completes one field's value: the JSON-ready result, or raises to give up.
Complete = Callable[[Any], object]
# Builds one object's result from its source.
Build = Callable[[object], dict[str, object]]
# A field of a compiled selection: its response name, how to read it, how to complete it.
Step = tuple[str, Callable[[object], Any], Complete]


class _GiveUp(Exception):
    """The compiled selection met a value only the normal path reports properly."""


# Compiled selections by plan key (``_plan_key``), each beside the field set it was
# compiled from (which keeps the key's nodes alive, so no id in it can be reused).
Plans = dict[Hashable, tuple[GroupedFieldSet, "Build | None"]]
# Per operation (by id, the operation kept alive beside): its shared compiled selections,
# or None when they may not be shared. As many operations as the parser cache keeps
# documents, so this pins no more than it does.
_operations: Kept[tuple[OperationDefinitionNode, Plans | None]] = Kept(DOCUMENT_CACHE_SIZE)


class PlainFieldsExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, completing selections of plain attributes in one go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Compiled selections by grouped field set (graphql-core memoises those per request,
        # so the 731 buckets of a report share one). Keyed by identity: each key is kept
        # alive alongside so its id cannot be reused.
        self._plans: dict[int, tuple[GroupedFieldSet, Build | None]] = {}
        self._shared_plans = _shared_plans(self.operation, self.fragment_definitions)

    def build_per_event_executor(self, payload: Any) -> PlainFieldsExecutor:
        """A subscription event's executor, with memos of its own.

        graphql-core 3.3.2 gives every per-event executor the same `_relevant_sub_fields`
        memo, keyed by the identity of field lists each event collects anew: shared, it
        (and the compiled selections, keyed the same way) would gain an entry (1-4 KB) per
        event for as long as the subscription lives.
        """
        # graphql-core's per-event executor is a shallow copy of this one.
        executor = cast("PlainFieldsExecutor", super().build_per_event_executor(payload))
        executor._relevant_sub_fields = {}
        executor._plans = {}
        return executor

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: DeliveryGroupMap | None,
    ) -> AwaitableOrValue[dict[str, Any]]:
        # A delivery group map means fields inside @defer: incremental delivery's business.
        if position_context is None:
            try:
                build = self._plan(parent_type, grouped_field_set)
                if build is not None:
                    return build(source_value)
            except Exception:
                pass  # the normal path below meets it again, and reports it where it belongs
        return super().execute_fields(
            parent_type, source_value, path, grouped_field_set, position_context
        )

    def _plan(
        self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet
    ) -> Build | None:
        entry = self._plans.get(id(grouped_field_set))
        if entry is None:
            entry = (grouped_field_set, self._build_for(parent_type, grouped_field_set))
            self._plans[id(grouped_field_set)] = entry
        return entry[1]

    def _build_for(
        self, parent_type: GraphQLObjectType, grouped_field_set: GroupedFieldSet
    ) -> Build | None:
        manager = self.middleware_manager
        if manager is not None and manager.middlewares:
            return None
        plans = self._shared_plans
        if plans is None:
            return compile_fields(self, parent_type, grouped_field_set)
        key = _plan_key(parent_type, grouped_field_set)
        shared = plans.get(key)
        if shared is None:
            shared = plans[key] = (
                grouped_field_set,
                compile_fields(self, parent_type, grouped_field_set),
            )
        return shared[1]


def _plan_key(parent: GraphQLObjectType, grouped_field_set: GroupedFieldSet) -> Hashable:
    """What a compiled selection depends on: the type and the field nodes of each name."""
    return parent, tuple(
        (name, tuple(id(detail.node) for detail in details))
        for name, details in grouped_field_set.items()
    )


def _shared_plans(operation: OperationDefinitionNode, fragments: dict[str, Any]) -> Plans | None:
    """The compiled selections the operation's requests share, or None if they may not.

    Only a document the parser cache keeps comes back with the same nodes, and only
    selections without directives compile the same whatever the variables.
    """
    source = operation.loc.source.body if operation.loc is not None else None
    if source is None or len(source) > MAX_CACHED_DOCUMENT_CHARACTERS:
        return None  # parsed anew for each request: nothing to share, and not to be kept
    known = _operations.get(id(operation))
    if known is not None:
        return known[1]
    directives = any(
        selection.directives
        for root in (operation, *fragments.values())
        for selection in _selections(root.selection_set)
    )
    plans: Plans | None = None if directives else {}
    _operations.put(id(operation), (operation, plans))
    return plans


def _selections(selection_set: SelectionSetNode) -> Iterator[Any]:
    pending = [selection_set]
    while pending:
        for selection in pending.pop().selections:
            yield selection
            nested = getattr(selection, "selection_set", None)
            if nested is not None:
                pending.append(nested)


def compile_fields(
    executor: Executor[Any], parent: GraphQLObjectType, grouped_field_set: GroupedFieldSet
) -> Build | None:
    """A function building the selection's result, or None when a field is not plain."""
    steps: list[Step] = []
    for response_name, details in grouped_field_set.items():
        step = _compile_field(executor, parent, response_name, details)
        if step is None:
            return None
        steps.append(step)
    if all(name == "__typename" for name, _, _ in steps):
        # Nothing is read from the source, so nothing would notice an awaitable or an
        # exception standing where the object should be: the normal path does.
        return None

    def build(source: object) -> dict[str, object]:
        return {name: complete(read(source)) for name, read, complete in steps}

    return build


def _compile_field(
    executor: Executor[Any],
    parent: GraphQLObjectType,
    response_name: str,
    details: FieldDetailsList,
) -> Step | None:
    node = details[0].node
    name = node.name.value
    if name == "__typename":
        return response_name, _constant(parent.name), _same
    field_def = parent.fields.get(name)
    if field_def is None or field_def.args or node.arguments:
        return None
    definition = field_def.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if not isinstance(definition, StrawberryField) or not definition.is_basic_field:
        return None
    if definition.default_resolver is not getattr:
        return None
    complete = _compile_type(executor, field_def.type, details)
    if complete is None:
        return None
    return response_name, attrgetter(definition.python_name), complete


def _constant(value: str) -> Callable[[object], str]:
    return lambda _source: value


def _same(value: object) -> object:
    return value


def _compile_type(
    executor: Executor[Any], return_type: GraphQLOutputType, details: FieldDetailsList
) -> Complete | None:
    """value -> completed value for a plain type, or None when the type is not plain."""
    non_null = isinstance(return_type, GraphQLNonNull)
    inner = return_type.of_type if isinstance(return_type, GraphQLNonNull) else return_type
    if is_leaf_type(inner):
        return _leaf(inner, non_null=non_null)
    if isinstance(inner, GraphQLList):
        return _list(executor, inner, details, non_null=non_null)
    if isinstance(inner, GraphQLObjectType):
        return _object(executor, inner, details, non_null=non_null)
    return None


# Each completer checks for None itself: one call per value fewer than a wrapper would
# take, on some 6,600 values a report.


def _leaf(leaf_type: GraphQLLeafType, *, non_null: bool) -> Complete:
    coerce = leaf_type.coerce_output_value

    def leaf(value: object) -> object:
        if value is None:
            if non_null:
                raise _GiveUp
            return None
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _GiveUp
        return coerced

    if leaf_type is GraphQLInt:
        # Int coercion costs two Python calls a value, and a report is mostly Ints: a
        # 32-bit int is its own coercion (graphql-core returns `int(value)`), so only other
        # values take the coercer.
        def int_leaf(value: object) -> object:
            if type(value) is int and GRAPHQL_MIN_INT <= value <= GRAPHQL_MAX_INT:
                return value
            return leaf(value)

        return int_leaf
    if leaf_type is GraphQLString or leaf_type is GraphQLID:
        # Both coercers return a str as it is.
        def str_leaf(value: object) -> object:
            return value if type(value) is str else leaf(value)

        return str_leaf
    return leaf


def _list(
    executor: Executor[Any],
    list_type: GraphQLList[Any],
    details: FieldDetailsList,
    *,
    non_null: bool,
) -> Complete | None:
    if any(
        directive.name.value == GraphQLStreamDirective.name
        for detail in details
        for directive in detail.node.directives or ()
    ):
        return None
    item = _compile_type(executor, list_type.of_type, details)
    if item is None:
        return None

    def items(value: object) -> object:
        if value is None:
            if non_null:
                raise _GiveUp
            return None
        if not isinstance(value, list | tuple):
            raise _GiveUp
        return [item(entry) for entry in value]

    return items


def _object(
    executor: Executor[Any],
    object_type: GraphQLObjectType,
    details: FieldDetailsList,
    *,
    non_null: bool,
) -> Complete | None:
    if object_type.is_type_of is not None:
        return None
    collected = executor.collect_subfields(object_type, details)
    if collected.new_defer_usages:
        return None
    build = compile_fields(executor, object_type, collected.grouped_field_set)
    if build is None:
        return None

    def complete(value: object) -> object:
        if value is None:
            if non_null:
                raise _GiveUp
            return None
        return build(value)

    return complete
