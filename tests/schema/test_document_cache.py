"""Parsed documents are cached for the SPA's small documents only: a large one is never kept."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache

from schema import schema
from schema.documents import DOCUMENT_CACHE_SIZE, MAX_CACHED_DOCUMENT_CHARACTERS, Kept


def parse_cache() -> Any:
    """The LRU-wrapped parse that every request's parser cache shares."""
    return _get_parse_cache(DOCUMENT_CACHE_SIZE)


def setup_function() -> None:
    # A full cache would not grow either way: start each test from an empty one.
    parse_cache().cache_clear()


def cached_documents() -> int:
    size: int = parse_cache().cache_info().currsize
    return size


def document(characters: int) -> str:
    # A unique comment, so that no earlier test cached this very text.
    text = f"# {uuid.uuid4().hex}\n{{ __typename }}\n"
    return text + "#" * max(0, characters - len(text) - 1) + "\n"


async def test_a_small_document_is_parsed_once_and_kept() -> None:
    before = cached_documents()
    small = document(200)

    for _ in range(2):
        result = await schema.execute(small)
        assert result.errors is None

    assert cached_documents() == before + 1


async def test_a_document_over_the_cached_size_still_runs_but_is_not_kept() -> None:
    before = cached_documents()
    large = document(MAX_CACHED_DOCUMENT_CHARACTERS + 1)

    result = await schema.execute(large)

    assert result.errors is None
    assert result.data == {"__typename": "Query"}
    assert cached_documents() == before


async def test_a_document_over_the_cached_size_is_validated_but_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept = Kept[Any](DOCUMENT_CACHE_SIZE)
    monkeypatch.setattr("schema.documents._validated", kept)
    strawberrys: Any = _get_validate_cache(DOCUMENT_CACHE_SIZE)
    before = strawberrys.cache_info().currsize

    invalid = document(MAX_CACHED_DOCUMENT_CHARACTERS + 100).replace("__typename", "nope")
    assert len(invalid) > MAX_CACHED_DOCUMENT_CHARACTERS
    result = await schema.execute(invalid)

    assert result.errors
    assert "Cannot query field 'nope'" in result.errors[0].message
    assert len(kept) == 0
    assert strawberrys.cache_info().currsize == before
