"""The executor's fast path on a small schema: the same answers as graphql-core's, errors too.

Each test executes one document against the same types twice: with `PlainFieldsExecutor`
and with Strawberry's stock executor (graphql-core completing field by field), and
requires the two results to be identical, JSON text and key order included.
"""

from __future__ import annotations

import json
from datetime import date
from enum import Enum
from typing import Any, cast

import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import ExecutionResult

from schema import execution
from schema.documents import MAX_CACHED_DOCUMENT_CHARACTERS, DocumentParserCache
from schema.execution import PlainFieldsExecutor


@strawberry.enum
class Shade(Enum):
    LIGHT = "light"
    DARK = "dark"


@strawberry.type
class Figure:
    count: int
    label: str | None = None


@strawberry.type
class Day:
    day: date
    shade: Shade
    figure: Figure
    tags: list[str]

    @strawberry.field
    def doubled(self) -> int:
        return self.figure.count * 2


@strawberry.type
class Query:
    days: list[Day | None]
    first: Day | None = None


class Loud(SchemaExtension):
    """Resolve middleware: every field passes through it, so every field must be executed."""

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        result = _next(root, info, *args, **kwargs)
        return result.upper() if isinstance(result, str) else result


FAST = strawberry.Schema(query=Query, execution_context_class=PlainFieldsExecutor)
NORMAL = strawberry.Schema(
    query=Query, execution_context_class=StrawberryGraphQLCoreExecutionContext
)
# As Tally's schema runs: documents parsed once and kept.
KEPT = strawberry.Schema(
    query=Query,
    execution_context_class=PlainFieldsExecutor,
    extensions=[lambda: DocumentParserCache(maxsize=16)],
)
WITH_MIDDLEWARE = strawberry.Schema(
    query=Query, execution_context_class=PlainFieldsExecutor, extensions=[Loud]
)

EVERYTHING = """
query($noTags: Boolean!) {
  __typename
  days {
    __typename
    on: day
    shade
    figure { count label }
    ...Tagged
    tags @skip(if: $noTags)
    again: figure { ... on Figure { label count } }
  }
}
fragment Tagged on Day { tags @include(if: true) figure { __typename } }
"""


def day(number: int, *, count: Any = 1, tags: Any = ("a", "b"), label: str | None = None) -> Day:
    return Day(
        day=date(2026, 1, number),
        shade=Shade.DARK if number % 2 else Shade.LIGHT,
        figure=Figure(count=count, label=label),
        tags=tags,
    )


def as_json(result: ExecutionResult) -> str:
    errors = [error.formatted for error in result.errors or ()]
    return json.dumps({"data": result.data, "errors": errors})


def both_ways(document: str, root: Query, **variables: Any) -> dict[str, Any]:
    """The fast path's result, after checking it is exactly the normal path's."""
    fast = FAST.execute_sync(document, root_value=root, variable_values=variables)
    normal = NORMAL.execute_sync(document, root_value=root, variable_values=variables)
    assert as_json(fast) == as_json(normal)
    answer: dict[str, Any] = json.loads(as_json(fast))
    return answer


@pytest.fixture
def field_executions(monkeypatch: pytest.MonkeyPatch) -> list[list[str | int]]:
    """The paths of the fields graphql-core executed one at a time."""
    paths: list[list[str | int]] = []
    execute_field = PlainFieldsExecutor.execute_field

    def counting(self: PlainFieldsExecutor, *args: Any) -> Any:
        paths.append(args[3].as_list())
        return execute_field(self, *args)

    monkeypatch.setattr(PlainFieldsExecutor, "execute_field", counting)
    return paths


def test_plain_selections_match_the_normal_path_with_fragments_aliases_and_directives() -> None:
    # given
    root = Query(days=[day(1), None, day(2, label="busy", tags=[])])
    # when
    answer = both_ways(EVERYTHING, root, noTags=False)
    # then
    assert answer["errors"] == []
    assert answer["data"]["days"][0] == {
        "__typename": "Day",
        "on": "2026-01-01",
        "shade": "DARK",
        "figure": {"count": 1, "label": None, "__typename": "Figure"},
        "tags": ["a", "b"],
        "again": {"label": None, "count": 1},
    }
    assert answer["data"]["days"][1] is None
    assert both_ways(EVERYTHING, root, noTags=True)["data"]["days"][2]["tags"] == []


def test_a_plain_selection_is_built_without_executing_fields_one_by_one(
    field_executions: list[list[str | int]],
) -> None:
    FAST.execute_sync("{ days { day figure { count } } }", root_value=Query(days=[day(1)]))
    assert field_executions == []


def test_a_null_in_a_non_null_leaf_is_the_same_located_error() -> None:
    root = Query(days=[day(1), day(2, count=None)])
    answer = both_ways("{ days { day figure { count } } }", root)
    assert answer["data"] == {"days": [{"day": "2026-01-01", "figure": {"count": 1}}, None]}
    [error] = answer["errors"]
    assert error["message"] == "Cannot return null for non-nullable field Figure.count."
    assert error["path"] == ["days", 1, "figure", "count"]
    assert error["locations"] == [{"line": 1, "column": 23}]


def test_a_value_the_scalar_refuses_is_the_same_located_error() -> None:
    answer = both_ways("{ first { figure { count } } }", Query(days=[], first=day(1, count="x")))
    [error] = answer["errors"]
    assert error["message"] == "Int cannot represent non-integer value: 'x'"
    assert error["path"] == ["first", "figure", "count"]


@pytest.mark.parametrize(
    ("count", "label"), [(True, 5), (3.0, True), (2**31 - 1, "z"), (-(2**31), None)]
)
def test_ints_and_strings_of_every_kind_are_coerced_as_graphql_core_does(
    count: Any, label: Any
) -> None:
    root = Query(days=[], first=day(1, count=count, label=label))
    answer = both_ways("{ first { figure { count label } } }", root)
    assert answer["errors"] == []
    assert answer["data"]["first"]["figure"]["count"] == count


def test_an_int_beyond_32_bits_is_the_same_located_error() -> None:
    answer = both_ways("{ first { figure { count } } }", Query(days=[], first=day(1, count=2**31)))
    [error] = answer["errors"]
    assert error["message"] == "Int cannot represent non 32-bit signed integer value: 2147483648"
    assert error["path"] == ["first", "figure", "count"]


def test_a_list_given_a_generator_falls_back_and_reads_it_once() -> None:
    # given: an iterator can be read only once, so the fast path must not start on it
    root = Query(days=[day(1, tags=(tag for tag in ["x", "y"]))])
    fast = FAST.execute_sync("{ days { tags } }", root_value=root)
    assert fast.errors is None
    assert fast.data == {"days": [{"tags": ["x", "y"]}]}


def test_an_attribute_that_raises_is_the_same_located_error() -> None:
    class Broken:
        count = 1

        @property
        def label(self) -> str:
            raise ValueError("no label today")

    broken = Day(day=date(2026, 1, 1), shade=Shade.DARK, figure=cast(Figure, Broken()), tags=[])
    root = Query(days=[], first=broken)
    answer = both_ways("{ first { day figure { count label } } }", root)
    assert answer["data"] == {"first": {"day": "2026-01-01", "figure": {"count": 1, "label": None}}}
    [error] = answer["errors"]
    assert (error["message"], error["path"]) == ("no label today", ["first", "figure", "label"])


def test_a_selection_with_a_resolver_is_executed_field_by_field_and_its_plain_parts_fast(
    field_executions: list[list[str | int]],
) -> None:
    root = Query(days=[day(1, count=3)])
    document = "{ days { doubled figure { count } } }"
    FAST.execute_sync(document, root_value=root)
    assert field_executions == [["days"], ["days", 0, "doubled"], ["days", 0, "figure"]]
    assert both_ways(document, root)["data"] == {"days": [{"doubled": 6, "figure": {"count": 3}}]}


def test_resolve_middleware_sees_every_field() -> None:
    root = Query(days=[day(1, label="quiet")])
    result = WITH_MIDDLEWARE.execute_sync("{ days { figure { label } } }", root_value=root)
    assert result.data == {"days": [{"figure": {"label": "QUIET"}}]}


@pytest.fixture
def compilations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The type of every selection compiled, nested ones included."""
    names: list[str] = []
    compile_fields = execution.compile_fields

    def counting(executor: Any, parent: Any, grouped_field_set: Any) -> Any:
        names.append(parent.name)
        return compile_fields(executor, parent, grouped_field_set)

    monkeypatch.setattr(execution, "compile_fields", counting)
    return names


def test_a_kept_document_is_compiled_once_for_all_its_requests(compilations: list[str]) -> None:
    document = "query Once { days { day figure { count } } }"
    first = KEPT.execute_sync(document, root_value=Query(days=[day(1)]))
    compiled = len(compilations)
    second = KEPT.execute_sync(document, root_value=Query(days=[day(2, count=7)]))
    assert compiled > 0
    assert len(compilations) == compiled
    assert first.data == {"days": [{"day": "2026-01-01", "figure": {"count": 1}}]}
    assert second.data == {"days": [{"day": "2026-01-02", "figure": {"count": 7}}]}


def test_a_kept_document_with_directives_is_compiled_for_each_request(
    compilations: list[str],
) -> None:
    # given: whether `label` is collected depends on each request's variables
    document = "query($x: Boolean!) { days { figure { count label @include(if: $x) } } }"
    root = Query(days=[day(1, label="a")])
    # when
    shown = KEPT.execute_sync(document, root_value=root, variable_values={"x": True})
    compiled = len(compilations)
    hidden = KEPT.execute_sync(document, root_value=root, variable_values={"x": False})
    # then
    assert shown.data == {"days": [{"figure": {"count": 1, "label": "a"}}]}
    assert hidden.data == {"days": [{"figure": {"count": 1}}]}
    assert len(compilations) == 2 * compiled


def test_a_document_too_long_to_keep_leaves_nothing_behind(compilations: list[str]) -> None:
    padding = "#" * MAX_CACHED_DOCUMENT_CHARACTERS
    document = f"{{ days {{ day }} }}\n{padding}\n"
    for _ in range(2):
        result = KEPT.execute_sync(document, root_value=Query(days=[day(1)]))
        assert result.data == {"days": [{"day": "2026-01-01"}]}
    assert compilations == ["Query", "Day", "Query", "Day"]
    kept = [operation.loc for operation, _ in execution._operations._entries.values()]
    assert all(loc and len(loc.source.body) <= MAX_CACHED_DOCUMENT_CHARACTERS for loc in kept)
