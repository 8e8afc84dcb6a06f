"""Documents kept across requests: parsed, validated, and (schema/execution.py) compiled.

The SPA sends a fixed set of small documents with variables, so each is worth keeping;
a client sending ever-new or huge texts must not make the process grow.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from graphql import DocumentNode, GraphQLError, validate
from strawberry.extensions import ParserCache, SchemaExtension

# Parsing and validating were a large share of a send's CPU (docs/benchmarks.md). The SPA
# sends a fixed set of documents with variables, so both are cached per document text,
# LRU-bounded: clients sending ever-new texts only evict entries, never grow memory. The
# validation cache is keyed by the parsed document object, which only the parser cache
# keeps the same across requests.
DOCUMENT_CACHE_SIZE = 512
# An SPA's documents are a few KB. A document may be up to the 1 MiB body limit (within
# the token limit, comments are free): 512 of those would pin half a GB, so longer ones
# are parsed and validated each time instead of kept.
MAX_CACHED_DOCUMENT_CHARACTERS = 32 * 1024


def _cacheable(extension: SchemaExtension) -> bool:
    query = extension.execution_context.query
    return query is None or len(query) <= MAX_CACHED_DOCUMENT_CHARACTERS


class DocumentParserCache(ParserCache):
    def on_parse(self) -> Iterator[None]:
        if _cacheable(self):
            yield from super().on_parse()
        else:
            yield


V = TypeVar("V")


class Kept(Generic[V]):
    """A bounded LRU map."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[Hashable, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V) -> None:
        self._entries[key] = value
        if len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)


class DocumentValidationCache(SchemaExtension):
    """A validation cache keyed by the parsed document's identity.

    Strawberry's own keys it by the document's value, and hashing a document walks its
    whole tree on every request; the parser cache already hands out the same object for
    the same text, so the object itself is the key (kept in the entry, so that an id
    reused after the document was dropped is never mistaken for it).
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is None or not _cacheable(self):
            # Strawberry validates it, keeping nothing.
            yield
            return
        rules = tuple(context.validation_rules)
        key = (id(document), rules)
        entry = _validated.get(key)
        if entry is None or entry[0] is not document:
            entry = (document, validate(context.schema._schema, document, rules))
            _validated.put(key, entry)
        context.pre_execution_errors = entry[1]
        yield


# (id of a parsed document, its validation rules) -> (the document, its errors).
_validated: Kept[tuple[DocumentNode, list[GraphQLError]]] = Kept(DOCUMENT_CACHE_SIZE)
