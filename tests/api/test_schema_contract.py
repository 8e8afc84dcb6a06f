"""The committed schema.graphql is the code's schema, and neither breaks the shared contract."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import build_schema, find_breaking_changes, find_dangerous_changes

from schema import schema

CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "contract" / "schema.graphql"
# Until every issue is done, contract fields may be missing, but nothing may contradict it.
NOT_BUILT_YET = ("TYPE_REMOVED", "FIELD_REMOVED", "VALUE_REMOVED_FROM_ENUM", "ARG_REMOVED")


def contract_breaks(server_sdl: str) -> list[str]:
    contract = build_schema(CONTRACT.read_text())
    server = build_schema(server_sdl)
    changes = find_breaking_changes(contract, server) + [
        change
        for change in find_dangerous_changes(contract, server)
        if change.type.name == "ARG_DEFAULT_VALUE_CHANGE"
    ]
    return [f"{c.type.name}: {c.description}" for c in changes]


def test_committed_schema_is_current(repo_root: Path) -> None:
    committed = (repo_root / "schema.graphql").read_text()
    assert committed.strip() == schema.as_str().strip(), "run `make schema` and commit it"


def test_schema_contradicts_nothing_in_the_contract() -> None:
    if not CONTRACT.exists():
        pytest.fail(f"the shared contract is missing: {CONTRACT}")
    breaks = [b for b in contract_breaks(schema.as_str()) if not b.startswith(NOT_BUILT_YET)]
    assert breaks == []
