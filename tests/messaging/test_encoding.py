"""Segment counting and Smart Encoding, checked by hand and against an independent reference.

The reference does not use messaging.encoding at all: the gsm0338 codec (PyPI) decides
whether a body is GSM-7 and encodes it; UCS-2 bodies are encoded as UTF-16. The encoded
stream is then cut every 153 septets / 67 code units, and a cut that would fall between an
escape and its character, or between the two halves of a surrogate pair, moves back one.
The module instead sums per-character sizes; the two must agree on every body.
"""

import contextlib
import math
import random
import string

import gsm0338
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messaging.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    MAX_BODY_CHARACTERS,
    SegmentInfo,
    segment_info,
    smart_encode,
)

CODEC = gsm0338.Codec()
ESCAPE = 0x1B


def is_gsm7(text: str) -> bool:
    # gsm0338 maps U+001B to the escape code itself; it is no character Twilio sends as GSM-7.
    if "\x1b" in text:
        return False
    try:
        CODEC.encode(text)
    except UnicodeEncodeError:
        return False
    return True


def ends_inside_escape(chunk: list[int]) -> bool:
    # 0x1B only ever appears as the escape prefix, never as the code after it.
    return chunk[-1] == ESCAPE


def ends_inside_surrogate_pair(chunk: list[int]) -> bool:
    return 0xD800 <= chunk[-1] <= 0xDBFF


def reference_count(text: str) -> tuple[SegmentInfo, int]:
    """The expected SegmentInfo, and how many cuts had to move back to keep a character whole."""
    if is_gsm7(text):
        encoding, single, part = "GSM-7", 160, 153
        stream = list(CODEC.encode(text)[0])  # one byte per septet, escapes included
        cut_splits_a_character = ends_inside_escape
    else:
        encoding, single, part = "UCS-2", 70, 67
        raw = text.encode("utf-16-be")
        stream = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
        cut_splits_a_character = ends_inside_surrogate_pair
    moved = 0
    if len(stream) <= single:
        segments = 1
    else:
        segments, start = 0, 0
        while start < len(stream):
            end = min(start + part, len(stream))
            if end < len(stream) and cut_splits_a_character(stream[start:end]):
                end -= 1
                moved += 1
            segments += 1
            start = end
    return SegmentInfo(encoding, segments, len(text), len(stream)), moved


# --- hand-checked cases ----------------------------------------------------------------

HAND_CHECKED = [
    # id, body, encoding, segments, units
    ("160-gsm7-is-one", "a" * 160, "GSM-7", 1, 160),
    ("161-gsm7-is-two", "a" * 161, "GSM-7", 2, 161),
    ("306-gsm7-is-two", "a" * 306, "GSM-7", 2, 306),
    ("307-gsm7-is-three", "a" * 307, "GSM-7", 3, 307),
    ("70-ucs2-is-one", "中" * 70, "UCS-2", 1, 70),
    ("71-ucs2-is-two", "中" * 71, "UCS-2", 2, 71),
    ("134-ucs2-is-two", "中" * 134, "UCS-2", 2, 134),
    ("135-ucs2-is-three", "中" * 135, "UCS-2", 3, 135),
    # '€' would take septets 153-154 of the first part: it moves whole to the second part,
    # so 306 septets need 3 segments (152 | € + 151 | 1).
    ("euro-at-153-moves-on", "a" * 152 + "€" + "a" * 152, "GSM-7", 3, 306),
    ("euro-ending-at-153-fits", "a" * 151 + "€" + "a" * 153, "GSM-7", 2, 306),
    # The emoji's surrogate pair would take units 67-68: it starts the second part.
    ("emoji-at-67-moves-on", "中" * 66 + "😀" + "中" * 66, "UCS-2", 3, 134),
    ("emoji-ending-at-67-fits", "中" * 65 + "😀" + "中" * 67, "UCS-2", 2, 134),
    ("e-acute-is-gsm7", "é", "GSM-7", 1, 1),
    ("C-cedilla-is-gsm7", "Ç", "GSM-7", 1, 1),
    ("c-cedilla-is-not", "ç", "UCS-2", 1, 1),
    ("a-acute-is-not", "á", "UCS-2", 1, 1),
    ("a-grave-is-gsm7-A-grave-is-not", "àÀ", "UCS-2", 1, 2),
    ("greek-capitals-are-gsm7", "ΔΦΓΛΩΠΨΣΘΞ", "GSM-7", 1, 10),
    ("euro-counts-two", "€", "GSM-7", 1, 2),
    ("form-feed-counts-two", "\f", "GSM-7", 1, 2),
    ("emoji-counts-two", "😀", "UCS-2", 1, 2),
    ("bmp-symbol-counts-one", "❤", "UCS-2", 1, 1),
    ("escape-char-forces-ucs2", "a\x1bb", "UCS-2", 1, 3),
    # Cases from the calculator's tests and issues, several confirmed against live Twilio.
    ("calc-ucs2-70-with-emoji", "😜" + "2" * 68, "UCS-2", 1, 70),
    ("calc-ucs2-71-with-emoji", "😜" + "2" * 69, "UCS-2", 2, 71),
    ("calc-18-brackets-count-one-in-ucs2", "this is a " + "]" * 74 + "😘", "UCS-2", 2, 86),
    ("calc-39-153-brackets-are-three", "]" * 153, "GSM-7", 3, 306),
    ("calc-66-crlf-counts-two", "a" * 80 + "\r\n" + "a" * 79, "GSM-7", 2, 161),
    ("calc-66-lf-counts-one", "a" * 80 + "\n" + "a" * 79, "GSM-7", 1, 160),
    ("calc-66-decomposed-accent", "e\u0301" * 70, "UCS-2", 3, 140),
    ("calc-66-precomposed-accent", "é" * 70, "GSM-7", 1, 70),
    # Calculator behaviour: an empty body is one empty segment (Twilio refuses it anyway).
    ("empty-is-one-segment", "", "GSM-7", 1, 0),
    ("over-the-limit-still-counted", "a" * 1700, "GSM-7", 12, 1700),
]


@pytest.mark.parametrize(
    ("body", "encoding", "segments", "units"),
    [case[1:] for case in HAND_CHECKED],
    ids=[case[0] for case in HAND_CHECKED],
)
def test_segment_info_hand_checked(body, encoding, segments, units):
    assert segment_info(body) == SegmentInfo(encoding, segments, len(body), units)


def test_characters_are_code_points_not_units():
    info = segment_info("Hi 😀€")
    assert (info.characters, info.units, info.encoding) == (5, 6, "UCS-2")
    assert segment_info("Hi €").units == 5  # GSM-7: the euro sign is escape + e


def test_max_body_characters_is_twilios_limit():
    assert MAX_BODY_CHARACTERS == 1600


def test_alphabets_match_gsm0338_tables():
    basic = {CODEC.decode(bytes([code]))[0] for code in range(128) if code != ESCAPE}
    extension = set()
    for code in range(128):
        with contextlib.suppress(UnicodeDecodeError):  # codes the extension table leaves empty
            extension.add(CODEC.decode(bytes([ESCAPE, code]))[0])
    assert basic == GSM7_BASIC
    assert extension == GSM7_EXTENSION
    assert {"\n", "\r", " ", "@", "£", "$", "¥", "è", "é", "Ç", "Ø", "Δ", "ß", "¤", "à"} <= basic


# --- generated corpus against the reference -------------------------------------------

PLAIN = string.ascii_letters + string.digits + " .,!?'-:;()/&%#+=\"\n"
EXTENSION = "^{}\\[]~|€\f"
GSM_ACCENTS = "èéùìòÇØøÅåÄÖÑÜäöñüàÉßÆæ@£$¥¤¡¿§_ΔΦΓΛΩΠΨΣΘΞ\r"
OTHER_ACCENTS = "áíóúçâêîôûëïãõÁÍÓÚÀÈÊÔœŒ"
BMP_EMOJI = "☀☺♥✓✨❤☎⚡✈"
ASTRAL_EMOJI = ["😀", "😜", "🎉", "👍", "🔥", "💯", "🚀", "🍕", "👍🏻", "👨\u200d👩\u200d👧", "🇮🇹"]
CJK = "中文字日本語한국어漢字"
LOOKALIKES = (
    "\u201c\u201d\u2018\u2019\u201a\u201b\u201e\u201f\u2014\u2013\u2026\u00a0\u2009"
    "\u00ab\u00bb\u2039\u203a\u2022\t\uff21\uff10\u200b\ufeff"
)
BOUNDARIES = [67, 70, 134, 140, 153, 160, 201, 268, 306, 320, 335, 459, 612, 1072, 1530, 1600]
PROFILES = {
    # name: [(pool, weight), ...]
    "plain": [(PLAIN, 1)],
    "extension-heavy": [(PLAIN, 3), (EXTENSION, 2)],
    "gsm-accents": [(PLAIN, 6), (GSM_ACCENTS, 2), (EXTENSION, 1)],
    "one-stray-accent": [(PLAIN, 400), (GSM_ACCENTS, 20), (OTHER_ACCENTS, 1)],
    "emoji-astral": [(PLAIN, 5), (ASTRAL_EMOJI, 2), (EXTENSION, 1)],
    "emoji-bmp": [(PLAIN, 5), (BMP_EMOJI, 1), (GSM_ACCENTS, 1)],
    "cjk": [(CJK, 6), (ASTRAL_EMOJI, 1), (PLAIN, 1)],
    "lookalikes": [(PLAIN, 8), (LOOKALIKES, 1)],
    "everything": [
        (PLAIN, 6), (EXTENSION, 1), (GSM_ACCENTS, 1), (OTHER_ACCENTS, 1),
        (BMP_EMOJI, 1), (ASTRAL_EMOJI, 1), (CJK, 1), (LOOKALIKES, 1),
    ],
}  # fmt: skip


def generated_bodies(count: int, seed: int = 20240611) -> list[str]:
    rng = random.Random(seed)
    # Flatten each profile into one weighted list of items so a body is one choices() call.
    flat = {}
    for name, pools in PROFILES.items():
        items, weights = [], []
        for pool, weight in pools:
            items += list(pool)
            weights += [weight / len(pool)] * len(pool)
        flat[name] = (items, weights)
    names = sorted(flat)
    bodies = []
    for _ in range(count):
        items, weights = flat[rng.choice(names)]
        roll = rng.random()
        if roll < 0.6:  # crowd the segment boundaries
            length = max(0, rng.choice(BOUNDARIES) + rng.randint(-4, 4))
        elif roll < 0.8:
            length = rng.randint(0, 200)
        else:
            length = rng.randint(0, MAX_BODY_CHARACTERS)
        body = "".join(rng.choices(items, weights, k=length))
        if rng.random() < 0.5:
            body = smart_encode(body)
        bodies.append(body[:MAX_BODY_CHARACTERS])
    return bodies


def test_generated_corpus_matches_reference():
    bodies = generated_bodies(6000)
    mismatches = []
    moved = {"GSM-7": 0, "UCS-2": 0}
    for index, body in enumerate(bodies):
        expected, moved_here = reference_count(body)
        moved[expected.encoding] += moved_here
        actual = segment_info(body)
        if actual != expected:
            mismatches.append(f"#{index} {body[:60]!r}... expected {expected}, got {actual}")
    assert not mismatches, f"{len(mismatches)} of {len(bodies)} differ:\n" + "\n".join(
        mismatches[:10]
    )
    # The corpus must exercise what it is meant to test, not only easy cases.
    infos = [segment_info(body) for body in bodies]
    for encoding in ("GSM-7", "UCS-2"):
        assert sum(i.encoding == encoding and i.segments == 1 for i in infos) >= 200
        assert sum(i.encoding == encoding and i.segments > 2 for i in infos) >= 300
        assert moved[encoding] >= 50, f"too few {encoding} characters kept whole at a cut"
    assert max(len(body) for body in bodies) == MAX_BODY_CHARACTERS


def test_reference_agrees_with_hand_checked_cases():
    # The reference must itself be right before 6,000 agreements with it mean anything.
    for case_id, body, encoding, segments, units in HAND_CHECKED:
        expected = SegmentInfo(encoding, segments, len(body), units)
        assert reference_count(body)[0] == expected, case_id


# --- smart encoding --------------------------------------------------------------------

REPLACED = [
    ("\u2018", "'"),
    ("\u2019", "'"),
    ("\u201b", "'"),
    ("\u201a", ","),  # SINGLE LOW-9 QUOTATION MARK: Twilio's list makes it a comma
    ("\u201c", '"'),
    ("\u201d", '"'),
    ("\u201e", '"'),
    ("\u201f", '"'),
    ("\u00ab", '"'),
    ("\u00bb", '"'),
    ("\u2039", "<"),
    ("\u203a", ">"),
    ("\u2013", "-"),
    ("\u2014", "-"),
    ("\uff0d", "-"),
    ("\u2022", "-"),
    ("\u2026", "..."),
    ("\u00a0", " "),
    ("\u2009", " "),
    ("\u3000", " "),
    ("\u200b", ""),
    ("\ufeff", ""),
    ("\t", " " * 7),
    ("\u00bd", "1/2"),
    ("\uff21", "A"),
    ("\uff3a", "Z"),
    ("\uff10", "0"),
    ("\u1d00", "A"),
]


@pytest.mark.parametrize(("lookalike", "replacement"), REPLACED)
def test_smart_encode_replaces_lookalike(lookalike, replacement):
    assert smart_encode(f"a{lookalike}b") == f"a{replacement}b"


# No look-alike on Twilio's list: these stay, and keep the message UCS-2. MINUS SIGN
# (U+2212) is not on the list either.
@pytest.mark.parametrize("kept", ["á", "ç", "À", "中", "😀", "❤", "\u2212", "e\u0301"])
def test_smart_encode_keeps_characters_without_lookalike(kept):
    assert smart_encode(f"a{kept}b") == f"a{kept}b"


def test_smart_encode_brings_word_processor_text_back_to_gsm7():
    body = (
        "\u201cSpring sale\u201d \u2013 20% off everything\u2026 Don\u2019t miss it! "
        "Show this text in store, "
        "offer ends Sunday."
    )
    before = segment_info(body)
    after = segment_info(smart_encode(body))
    assert smart_encode(body) == (
        '"Spring sale" - 20% off everything... Don\'t miss it! Show this text in store, '
        "offer ends Sunday."
    )
    assert (before.encoding, before.segments) == ("UCS-2", 2)
    assert (after.encoding, after.segments) == ("GSM-7", 1)


def test_smart_encode_leaves_real_emoji_in_ucs2():
    body = "Sale “today” only 🎉"
    assert smart_encode(body) == 'Sale "today" only 🎉'
    assert segment_info(smart_encode(body)).encoding == "UCS-2"


# --- properties ------------------------------------------------------------------------

any_body = st.one_of(
    st.text(alphabet=st.sampled_from(PLAIN + EXTENSION + GSM_ACCENTS), max_size=1700),
    st.text(alphabet=st.one_of(st.sampled_from(PLAIN + EXTENSION), st.characters()), max_size=700),
    st.text(max_size=300),
)


@settings(max_examples=300, deadline=None, database=None)
@given(body=any_body)
def test_segments_cover_the_units(body):
    info = segment_info(body)
    single, part = (160, 153) if info.encoding == "GSM-7" else (70, 67)
    assert info.characters == len(body)
    if info.units <= single:
        assert info.segments == 1
    else:
        assert info.segments >= math.ceil(info.units / part)
        assert info.segments * part >= info.units
        # Greedy: a part closes only when a character of at most 2 units does not fit.
        assert (info.segments - 1) * (part - 1) < info.units


@settings(max_examples=300, deadline=None, database=None)
@given(body=st.text(alphabet=st.one_of(st.sampled_from(LOOKALIKES), st.characters())))
def test_smart_encode_is_idempotent_and_only_adds_gsm7(body):
    once = smart_encode(body)
    assert smart_encode(once) == once
    assert is_gsm7("".join(set(once) - set(body)))
