"""Documents kept across requests: parsed, validated, and (schema/execution.py) compiled.

The SPA sends a fixed set of small documents with variables, so each is worth keeping;
a client sending ever-new or huge texts must not make the process grow.
"""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import ParserCache, SchemaExtension, ValidationCache

# Validating and parsing the document took a third of the server's CPU per sendMessage
# (about 2.3 of 7 ms; docs/benchmarks.md). The SPA sends a fixed set of documents with
# variables, so both are cached per document text, LRU-bounded: clients sending ever-new
# texts only evict entries, never grow memory. The validation cache is keyed by the parsed
# document object, which only the parser cache keeps the same across requests.
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


class DocumentValidationCache(ValidationCache):
    def on_validate(self) -> Iterator[None]:
        if _cacheable(self):
            yield from super().on_validate()
        else:
            yield
