"""What an SMS body costs, counted the way carriers bill it.

Rules (product contract, "smart encoding" off, so no character is ever replaced):

* A body is GSM-7 when every character is in the 3GPP TS 23.038 default alphabet or its
  extension table; otherwise the whole body is UCS-2.
* GSM-7 counts septets, where extension-table characters take two (escape + code).
  UCS-2 counts UTF-16 code units, where characters outside the BMP take two.
* A body of at most 160 GSM-7 / 70 UCS-2 units is one segment. A longer one is split into
  segments of 153 / 67 units, because each part then carries a concatenation header.
* Segments fill greedily and never split what the reader sees as one character: a GSM-7 escape
  pair, a surrogate pair, or (UCS-2) an extended grapheme cluster. What would straddle a
  boundary starts the next segment and the units left free are lost. CR and LF always count as
  two separate characters.
* One segment costs one credit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import regex

from models.enums import Encoding

__all__ = ["MAX_BODY_CHARACTERS", "Encoding", "SegmentCount", "count_segments"]

MAX_BODY_CHARACTERS = 1600

_GSM7_SINGLE = 160
_GSM7_MULTI = 153
_UCS2_SINGLE = 70
_UCS2_MULTI = 67
_LAST_BMP = "\uffff"

# The TS 23.038 default alphabet in position order 0x00-0x7F, without 0x1B: that position is the
# escape into the extension table, not a character. The Greek capitals are spelled as escapes so
# that look-alikes (U+2126 OHM SIGN, U+2206 INCREMENT, Latin capitals) cannot creep in.
_GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039eÆæßÉ"  # Δ_ΦΓΛΩΠΨΣΘΞ ÆæßÉ
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Extension table in position order: form feed, ^ { } \ [ ~ ] | €.
_GSM7_EXTENSION = frozenset("\x0c^{}\\[~]|€")
_GSM7_CHARACTERS = frozenset(_GSM7_BASIC) | _GSM7_EXTENSION

# Unicode joins CRLF into one grapheme cluster, but carriers bill CR and LF as two characters that
# may land in different segments; trying them first keeps \X from pairing them.
_CLUSTER = regex.compile(r"\r|\n|\X")


@dataclass(frozen=True, slots=True)
class SegmentCount:
    encoding: Encoding
    units: int
    """GSM7: septets (extension characters count 2). UCS2: UTF-16 code units."""
    segments: int
    """0 for an empty body."""
    units_per_segment: int
    """160/70 when the body fits one segment (also when empty), else 153/67."""
    remaining_in_segment: int
    """Units that still fit in the last segment before another one starts."""
    non_gsm_characters: tuple[str, ...]
    """Distinct code points forcing UCS2, in order of first appearance (empty for GSM7)."""

    @property
    def credits(self) -> int:
        return self.segments


def count_segments(body: str) -> SegmentCount:
    """Return the encoding, size and segment count of sending ``body`` as one SMS."""
    if _GSM7_CHARACTERS.issuperset(body):
        return _count_gsm7(body)
    return _count_ucs2(body)


def _count_gsm7(body: str) -> SegmentCount:
    units = len(body) + sum(map(body.count, _GSM7_EXTENSION))
    if units <= _GSM7_SINGLE:
        return _single_segment(Encoding.GSM7, units, _GSM7_SINGLE, ())
    # Every GSM-7 character is its own cluster, so only escape pairs need keeping together.
    sizes = (2 if char in _GSM7_EXTENSION else 1 for char in body)
    return _packed(Encoding.GSM7, units, _GSM7_MULTI, sizes, ())


def _count_ucs2(body: str) -> SegmentCount:
    non_gsm = tuple(char for char in dict.fromkeys(body) if char not in _GSM7_CHARACTERS)
    units = _utf16_units(body)
    if units <= _UCS2_SINGLE:
        return _single_segment(Encoding.UCS2, units, _UCS2_SINGLE, non_gsm)
    return _packed(Encoding.UCS2, units, _UCS2_MULTI, _ucs2_sizes(body), non_gsm)


def _ucs2_sizes(body: str) -> Iterator[int]:
    for cluster in _CLUSTER.findall(body):
        # Checking for the common all-BMP cluster first saves an encode per cluster.
        size = len(cluster) if max(cluster) <= _LAST_BMP else _utf16_units(cluster)
        if size <= _UCS2_MULTI:
            yield size
        else:
            # A cluster longer than a whole segment (a pathological ZWJ chain) fits no segment,
            # so it is split at code points, which still keeps every surrogate pair whole.
            yield from map(_utf16_units, cluster)


def _utf16_units(text: str) -> int:
    # surrogatepass: a lone surrogate is still one code unit on the wire, not an error.
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _single_segment(
    encoding: Encoding, units: int, capacity: int, non_gsm: tuple[str, ...]
) -> SegmentCount:
    return SegmentCount(
        encoding=encoding,
        units=units,
        segments=1 if units else 0,
        units_per_segment=capacity,
        remaining_in_segment=capacity - units,
        non_gsm_characters=non_gsm,
    )


def _packed(
    encoding: Encoding,
    units: int,
    capacity: int,
    sizes: Iterator[int],
    non_gsm: tuple[str, ...],
) -> SegmentCount:
    segments, used = 1, 0
    for size in sizes:
        if used + size > capacity:
            segments, used = segments + 1, 0
        used += size
    return SegmentCount(
        encoding=encoding,
        units=units,
        segments=segments,
        units_per_segment=capacity,
        remaining_in_segment=capacity - used,
        non_gsm_characters=non_gsm,
    )
