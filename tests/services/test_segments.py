from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.segments import (
    MAX_BODY_CHARACTERS,
    Encoding,
    SegmentCount,
    count_segments,
)

# Typed independently of the module from 3GPP TS 23.038, one row per 16 positions, with the escape
# (0x1B) kept in place so positions can be checked against the standard.
ESC = "\x1b"
GSM7_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ" + ESC + "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM7_BASIC_CHARACTERS = GSM7_BASIC_TABLE.replace(ESC, "")
GSM7_EXTENSION_CHARACTERS = "\x0c^{}\\[~]|€"


def test_empty_body_is_zero_gsm7_segments_with_a_full_segment_left() -> None:
    assert count_segments("") == SegmentCount(
        encoding=Encoding.GSM7,
        units=0,
        segments=0,
        units_per_segment=160,
        remaining_in_segment=160,
        non_gsm_characters=(),
    )


def test_160_gsm_characters_fit_one_segment() -> None:
    result = count_segments("a" * 160)
    assert (result.encoding, result.units, result.segments) == (Encoding.GSM7, 160, 1)
    assert (result.units_per_segment, result.remaining_in_segment) == (160, 0)


def test_161_gsm_characters_take_two_segments_of_153() -> None:
    result = count_segments("a" * 161)
    assert (result.units, result.segments) == (161, 2)
    assert (result.units_per_segment, result.remaining_in_segment) == (153, 145)


def test_306_gsm_characters_fill_two_segments_exactly() -> None:
    result = count_segments("a" * 306)
    assert (result.segments, result.remaining_in_segment) == (2, 0)


def test_307_gsm_characters_take_three_segments() -> None:
    result = count_segments("a" * 307)
    assert (result.segments, result.remaining_in_segment) == (3, 152)


def test_70_ucs2_characters_fit_one_segment() -> None:
    result = count_segments("ж" * 70)
    assert (result.encoding, result.units, result.segments) == (Encoding.UCS2, 70, 1)
    assert (result.units_per_segment, result.remaining_in_segment) == (70, 0)
    assert result.non_gsm_characters == ("ж",)


def test_71_ucs2_characters_take_two_segments_of_67() -> None:
    result = count_segments("ж" * 71)
    assert (result.units, result.segments) == (71, 2)
    assert (result.units_per_segment, result.remaining_in_segment) == (67, 63)


@pytest.mark.parametrize("char", ["€", "{", "\x0c"])
def test_extension_character_counts_two_septets(char: str) -> None:
    result = count_segments(char)
    assert (result.encoding, result.units, result.remaining_in_segment) == (
        Encoding.GSM7,
        2,
        158,
    )


def test_80_euro_signs_fill_one_segment_and_81_take_two() -> None:
    eighty = count_segments("€" * 80)
    assert (eighty.units, eighty.segments) == (160, 1)
    # 76 pairs fill 152 of 153 septets; the 77th pair cannot be split, so 5 pairs move on.
    eighty_one = count_segments("€" * 81)
    assert (eighty_one.segments, eighty_one.remaining_in_segment) == (2, 153 - 5 * 2)


def test_escape_pair_straddling_153_boundary_starts_next_segment() -> None:
    # First segment holds 152 'a' and loses 1 septet; the second starts with the 2-septet €.
    result = count_segments("a" * 152 + "€" + "a" * 7)
    assert (result.units, result.segments) == (161, 2)
    assert result.remaining_in_segment == 153 - (2 + 7)


def test_lost_septet_at_boundary_can_cost_an_extra_segment() -> None:
    result = count_segments("a" * 152 + "€" + "a" * 152)
    assert result.units == 306
    assert (result.segments, result.remaining_in_segment) == (3, 152)


def test_emoji_counts_two_utf16_units() -> None:
    result = count_segments("😀")
    assert (result.encoding, result.units, result.remaining_in_segment) == (Encoding.UCS2, 2, 68)


def test_surrogate_pair_straddling_67_boundary_starts_next_segment() -> None:
    result = count_segments("ж" * 66 + "😀" + "ж" * 3)
    assert (result.units, result.segments) == (71, 2)
    assert result.remaining_in_segment == 67 - (2 + 3)


def test_lost_unit_at_ucs2_boundary_can_cost_an_extra_segment() -> None:
    result = count_segments("ж" * 66 + "😀" + "ж" * 66)
    assert result.units == 134
    assert (result.segments, result.remaining_in_segment) == (3, 66)


@pytest.mark.parametrize(
    ("cluster", "cluster_units"),
    [
        pytest.param("👍🏽", 4, id="skin-tone"),
        pytest.param("👨\u200d👩\u200d👧\u200d👦", 11, id="zwj-family"),
        pytest.param("🇺🇸", 4, id="flag"),
        pytest.param("e\u0301", 2, id="combining-acute"),
    ],
)
def test_grapheme_cluster_straddling_67_boundary_moves_whole(
    cluster: str, cluster_units: int
) -> None:
    # The prefix leaves room for the cluster's first code point but not the whole cluster.
    prefix = 67 - cluster_units + 1
    tail = 71 - prefix - cluster_units
    result = count_segments("ж" * prefix + cluster + "ж" * tail)
    assert (result.units, result.segments) == (71, 2)
    assert result.remaining_in_segment == 67 - (cluster_units + tail)


def test_cluster_longer_than_a_segment_is_split_at_code_points() -> None:
    # 👨 + 30 × (ZWJ 👨) is one 92-unit cluster; splitting at code points fills the first segment
    # with 66 units (the next 👨 would straddle) and leaves 26 for the second.
    result = count_segments("👨" + "\u200d👨" * 30)
    assert (result.units, result.segments) == (92, 2)
    assert result.remaining_in_segment == 67 - 26


def test_1600_emoji_do_not_hang_and_pack_33_per_segment() -> None:
    result = count_segments("😀" * MAX_BODY_CHARACTERS)
    assert result.units == 3200
    # 33 emoji (66 units) per segment: 48 full segments, then 16 emoji (32 units).
    assert (result.segments, result.remaining_in_segment) == (49, 67 - 32)


def test_1600_code_point_zwj_chain_does_not_hang() -> None:
    result = count_segments("👨" + "\u200d👨" * 533)
    assert result.units == 1601
    assert result.segments * 67 >= result.units
    assert result.segments == 25


def test_greek_capital_alpha_forces_ucs2_but_delta_does_not() -> None:
    alpha = count_segments("\u0391")
    assert (alpha.encoding, alpha.non_gsm_characters) == (Encoding.UCS2, ("\u0391",))
    assert count_segments("\u0394").encoding is Encoding.GSM7


@pytest.mark.parametrize("char", "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ")
def test_greek_capitals_that_look_latin_force_ucs2(char: str) -> None:
    assert count_segments(char).encoding is Encoding.UCS2


def test_lowercase_c_cedilla_forces_ucs2_but_capital_does_not() -> None:
    assert count_segments("ç").encoding is Encoding.UCS2
    assert count_segments("Ç").encoding is Encoding.GSM7


def test_smart_quotes_force_ucs2_listed_distinct_in_order_of_first_appearance() -> None:
    result = count_segments("“Don’t” – ‘it’s’ “done”")
    assert result.encoding is Encoding.UCS2
    assert result.non_gsm_characters == ("“", "’", "”", "–", "‘")


def test_gsm7_body_lists_no_non_gsm_characters() -> None:
    assert count_segments("Hello {world} €5").non_gsm_characters == ()


def test_gsm7_basic_table_has_127_characters_besides_the_escape() -> None:
    assert len(GSM7_BASIC_TABLE) == 128
    assert len(set(GSM7_BASIC_CHARACTERS)) == len(GSM7_BASIC_CHARACTERS) == 127
    assert len(set(GSM7_EXTENSION_CHARACTERS)) == 10


@pytest.mark.parametrize(
    ("position", "char"),
    [
        (0x00, "@"),
        (0x02, "$"),
        (0x09, "Ç"),
        (0x10, "\u0394"),
        (0x15, "\u03a9"),
        (0x1B, ESC),
        (0x24, "¤"),
        (0x40, "¡"),
        (0x5F, "§"),
        (0x60, "¿"),
        (0x7F, "à"),
    ],
)
def test_gsm7_basic_table_positions_match_the_standard(position: int, char: str) -> None:
    assert GSM7_BASIC_TABLE[position] == char


@pytest.mark.parametrize("char", GSM7_BASIC_CHARACTERS)
def test_every_basic_table_character_is_one_gsm7_septet(char: str) -> None:
    result = count_segments(char)
    assert (result.encoding, result.units) == (Encoding.GSM7, 1)


@pytest.mark.parametrize("char", GSM7_EXTENSION_CHARACTERS)
def test_every_extension_table_character_is_two_gsm7_septets(char: str) -> None:
    result = count_segments(char)
    assert (result.encoding, result.units) == (Encoding.GSM7, 2)


def test_no_other_bmp_character_is_gsm7() -> None:
    gsm7 = {
        char for char in map(chr, range(0x10000)) if count_segments(char).encoding is Encoding.GSM7
    }
    assert gsm7 == set(GSM7_BASIC_CHARACTERS + GSM7_EXTENSION_CHARACTERS)


def test_crlf_counts_two_units() -> None:
    assert count_segments("\r\n").units == 2


def test_crlf_may_be_split_between_gsm7_segments() -> None:
    result = count_segments("a" * 152 + "\r\n" + "a" * 7)
    assert (result.segments, result.remaining_in_segment) == (2, 153 - 8)


def test_crlf_may_be_split_between_ucs2_segments() -> None:
    result = count_segments("ж" * 66 + "\r\n" + "ж" * 3)
    assert (result.segments, result.remaining_in_segment) == (2, 67 - 4)


@pytest.mark.parametrize("body", ["", "hi", "a" * 161, "ж" * 200, "😀" * 40])
def test_credits_equal_segments(body: str) -> None:
    result = count_segments(body)
    assert result.credits == result.segments


GSM7_TEXT = st.text(st.sampled_from(GSM7_BASIC_CHARACTERS + GSM7_EXTENSION_CHARACTERS))
ANY_TEXT = st.text(st.one_of(st.sampled_from("a €{\r\nжΔ😀🏽\u0301\u200d🇺🇸"), st.characters()))
# Repeating a short snippet reaches multi-segment lengths far more often than long random text.
BODIES = st.builds(str.__mul__, st.one_of(GSM7_TEXT, ANY_TEXT), st.integers(1, 60))


@given(BODIES)
def test_segment_count_invariants_hold_for_any_body(body: str) -> None:
    result = count_segments(body)
    if result.segments > 1:
        assert result.segments * result.units_per_segment >= result.units
    assert 0 <= result.remaining_in_segment <= result.units_per_segment
    assert (result.encoding is Encoding.GSM7) == (result.non_gsm_characters == ())
    assert (result.segments == 0) == (body == "")
    assert count_segments(body + body).segments >= result.segments
