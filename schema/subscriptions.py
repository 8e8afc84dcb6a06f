"""Subscriptions: the viewer's live balance, and the executor that fans its events out cheaply.

Each broker event reaches every subscriber of the account in this process. Executing
the subscription's selection set once per subscriber per event cost about 0.2 ms
each (1,000 subscribers: 200 ms of CPU per event), so the payload is built once per
event and, when a selection reads only plain attributes (nothing that depends on the
viewer or queries anything), its result is computed once and shared by every
subscriber that sent the same document. docs/live-balances.md has the measurements.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import field
from typing import Any, cast

import strawberry
from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)
from graphql.execution import Executor
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField
from strawberry.types.nodes import Selection

from models import LedgerEntry as LedgerEntryRow
from schema.context import Context, Loaders
from schema.credits import CreditBalance, LedgerEntry
from schema.execution import PlainFieldsExecutor
from schema.notices import Notice
from services import live


@strawberry.type
class BalanceEvent:
    balance: CreditBalance
    entries: list[LedgerEntry] = strawberry.field(
        description="The ledger entries of this change, in order; empty for the first event."
    )
    notices: list[Notice] = strawberry.field(
        description=(
            "The notices this change raised, in the order they were raised "
            "(see RULES.md for who sees which)."
        )
    )
    # Results of plain-attribute selections, by operation (SubscriptionExecutor).
    results: strawberry.Private[dict[int, tuple[OperationDefinitionNode, ExecutionResult]]] = field(
        default_factory=dict
    )

    @classmethod
    def from_result(cls, seen: live.LiveEvent) -> BalanceEvent:
        # Every subscriber of the process gets the same event object: build its payload
        # once (per set of hidden messages) and share it.
        key = ("graphql", seen.hidden_messages, tuple(n.id for n in seen.notices))
        payload = seen.event.memo.get(key)
        if not isinstance(payload, cls):
            payload = cls(
                balance=CreditBalance.from_result(seen.event.balance),
                entries=[_entry(row, seen.hidden_messages) for row in seen.event.entries],
                notices=[Notice.from_result(notice) for notice in seen.notices],
            )
            seen.event.memo[key] = payload
        return payload


def _entry(row: LedgerEntryRow, hidden: frozenset[int]) -> LedgerEntry:
    entry = LedgerEntry.from_model(row)
    if entry.message_key in hidden:
        entry.message_key = None
    return entry


@strawberry.type(name="Subscription")
class Subscription:
    @strawberry.subscription(
        description=(
            "The viewer's account balance. The first event is the current balance with no\n"
            "entries; then one event per committed change (send, receive, purchase,\n"
            "auto-recharge, refund, monthly reset), in commit order, never before commit."
        )
    )
    async def balance_changed(
        self, info: strawberry.Info[Context, Any]
    ) -> AsyncGenerator[BalanceEvent, None]:
        context = info.context
        runtime = context.runtime
        loads_messages = _selects(info.selected_fields, "message")
        async for seen in live.balance_changes(
            actor=context.actor,
            runtime=runtime,
        ):
            if loads_messages and seen.event.entries:
                # A websocket keeps one context, loaders included: fresh ones per event keep
                # `entries.message` current and the connection's caches from growing.
                context.loaders = Loaders()
            yield BalanceEvent.from_result(seen)


def _selects(selections: Sequence[Selection], name: str) -> bool:
    """Whether a field `name` is selected anywhere in `selections` (fragments included)."""
    return any(
        getattr(selection, "name", None) == name or _selects(selection.selections, name)
        for selection in selections
    )


class SubscriptionExecutor(PlainFieldsExecutor):
    """The schema's executor: plain selections in one go, and each event once per process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shareable: bool | None = None

    def build_per_event_executor(self, payload: Any) -> PlainFieldsExecutor:
        if self._shareable is None:
            self._shareable = selects_only_plain_fields(self)
        if self._shareable and isinstance(payload, BalanceEvent):
            shared = payload.results.get(id(self.operation))
            if shared is not None:
                # Another subscriber of this process ran the same operation on this event:
                # no executor to copy, only its result to hand on.
                return cast(PlainFieldsExecutor, _SharedResult(shared[1]))
        return super().build_per_event_executor(payload)

    def execute_operation(self, serially: bool | None = None) -> Any:
        payload = self.root_value
        if not (self._shareable and isinstance(payload, BalanceEvent)):
            return super().execute_operation(serially)
        shared = payload.results.get(id(self.operation))
        if shared is not None:
            return shared[1]
        result = super().execute_operation(serially)
        if isinstance(result, ExecutionResult):
            # The operation is kept with its result so that its id cannot be reused meanwhile.
            payload.results[id(self.operation)] = (self.operation, result)
        return result


class _SharedResult:
    """What graphql-core asks of a per-event executor, for a result already made."""

    def __init__(self, result: ExecutionResult) -> None:
        self._result = result

    def execute_operation(self, serially: bool | None = None) -> ExecutionResult:
        return self._result


def selects_only_plain_fields(executor: Executor[Any]) -> bool:
    """Whether the subscription's result depends on nothing but the event and the document.

    True when every field below the root is a plain attribute (no resolver: nothing
    reads the viewer, the context or the database) and no variable is involved.
    """
    operation = executor.operation
    if operation.variable_definitions:
        return False
    root = executor.schema.subscription_type
    if root is None:
        return False
    return _plain(executor, root, operation.selection_set, top=True)


def _plain(
    executor: Executor[Any], parent: GraphQLObjectType, selections: SelectionSetNode, *, top: bool
) -> bool:
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            if not _plain_field(executor, parent, selection, top=top):
                return False
        elif isinstance(selection, InlineFragmentNode | FragmentSpreadNode):
            fragment = _fragment(executor, selection)
            if fragment is None or not _plain(executor, parent, fragment, top=top):
                return False
    return True


def _plain_field(
    executor: Executor[Any], parent: GraphQLObjectType, node: FieldNode, *, top: bool
) -> bool:
    name = node.name.value
    if name.startswith("__"):
        return name == "__typename"
    field_def = parent.fields.get(name)
    if field_def is None:
        return False
    definition = field_def.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
    # The root field's resolver runs once per subscription; per event it returns the payload.
    if not top and not (isinstance(definition, StrawberryField) and definition.is_basic_field):
        return False
    if node.selection_set is None:
        return True
    child = get_named_type(field_def.type)
    return isinstance(child, GraphQLObjectType) and _plain(
        executor, child, node.selection_set, top=False
    )


def _fragment(
    executor: Executor[Any], node: InlineFragmentNode | FragmentSpreadNode
) -> SelectionSetNode | None:
    # Every type below the root is an object type, so a fragment can only name its own.
    if isinstance(node, InlineFragmentNode):
        return node.selection_set
    definition: FragmentDefinitionNode | None = executor.fragment_definitions.get(node.name.value)
    return None if definition is None else definition.selection_set
