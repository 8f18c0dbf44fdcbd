"""SMS encoding: how many segments Twilio will bill for a body, and Twilio's Smart Encoding.

A marketer is shown the segment count per recipient after personalization
(compliance.md, "Message encoding"), so the count must be the one Twilio bills, not an
estimate. The rules follow Twilio's open-source message-segment-calculator
(github.com/TwilioDevEd/message-segment-calculator):

- GSM-7 when every character is in the GSM 03.38 default alphabet or its extension table,
  otherwise UCS-2 for the whole message.
- GSM-7 counts septets (an extension character is escape + character, 2 septets); UCS-2
  counts UTF-16 code units (a character outside the Basic Multilingual Plane, like most
  emoji, is a surrogate pair, 2 units).
- One segment holds 160 septets / 70 units. Past that every segment carries a 6-octet
  concatenation header and holds 153 septets / 67 units. Segments are filled greedily and a
  character is never split: an extension character or a surrogate pair that does not fit
  whole starts the next segment, so the count can exceed ceil(units / 153).
"""

from dataclasses import dataclass

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# Twilio rejects longer bodies; callers validate, segment_info still counts whatever it gets.
MAX_BODY_CHARACTERS = 1600

# GSM 03.38 default alphabet, in table order (0x00-0x7F), less 0x1B which is the escape
# code and not a character: Twilio sends a message containing U+001B as UCS-2.
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each costs two septets (escape + code). Form feed is in it too and
# Twilio's calculator counts it the same way.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[]~|€")
_GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION

# encoding -> (capacity of a lone segment, capacity of each part of a concatenated message)
_CAPACITY = {GSM7: (160, 153), UCS2: (70, 67)}


@dataclass(frozen=True)
class SegmentInfo:
    """What Twilio will bill for one body.

    characters is len(text) (code points); units is septets for GSM-7 or UTF-16 code units
    for UCS-2, the quantity the segment capacities are measured in.
    """

    encoding: str
    segments: int
    characters: int
    units: int


def _unit_sizes(text: str, encoding: str) -> list[int]:
    """Size of each character in the encoding's units; a character is never split.

    The calculator goes further and keeps a whole grapheme cluster (a ZWJ family emoji, a
    flag, a letter + combining accent) in one segment; the two differ only when such a
    cluster straddles a cut, and the stdlib cannot segment graphemes.
    """
    if encoding == GSM7:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def segment_info(text: str) -> SegmentInfo:
    """Count segments as Twilio bills them (the rules are in the module docstring).

    An empty body counts as one (empty) segment of GSM-7, as Twilio's calculator reports it;
    Twilio itself refuses an empty body, which callers validate before sending.
    """
    encoding = GSM7 if all(ch in _GSM7_ALL for ch in text) else UCS2
    sizes = _unit_sizes(text, encoding)
    units = sum(sizes)
    single, per_part = _CAPACITY[encoding]
    segments = 1
    if units > single:
        used = 0
        for size in sizes:
            if used + size > per_part:
                segments += 1
                used = 0
            used += size
    return SegmentInfo(encoding=encoding, segments=segments, characters=len(text), units=units)


# Twilio's Smart Encoding list (twilio.com/docs/messaging/services/smart-encoding-char-list),
# as kept in the calculator's SmartEncodingMap with its later fixes (single angle quotes map
# to the matching < and >, U+2017 to "_", U+200C is dropped). Grouped by replacement; every
# replacement is GSM-7 and no replacement is itself a key, so the mapping is idempotent.
# Deliberate difference: the calculator turns NO-BREAK SPACE and the other fixed-width
# spaces into two spaces (apparently a typo: it uses one for U+2001, U+2028, U+2029); we
# use one space for all of them.
_SMART_GROUPS: dict[str, str] = {
    '"': "\u00ab\u00bb\u02ba\u02ee\u201c\u201d\u201e\u201f\u275d\u275e\u301d\u301e\uff02",
    "'": (
        "\u0060\u00b4\u02b9\u02bb\u02bc\u02bd\u02c8\u02ca\u02cb\u0313\u0314\u2018\u2019"
        "\u201b\u275b\u275c\ufe10\ufe11\uff07"
    ),
    "-": "\u2010\u2013\u2014\u2015\u2022\u2043\u23bc\u23bd\ufe63\uff0d",
    "...": "\u2026",
    " ": (
        "\u0080\u008d\u0090\u009b\u009f\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
        "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
    ),
    "       ": "\t",  # the calculator's choice: a tab is seven spaces
    "": (  # invisible: control characters, zero-width characters, byte-order mark
        "\u0000\u0003\u0004\u0010\u0011\u0012\u0013\u0014\u0017\u0019\u200b\u200c\u2060\ufeff"
    ),
    "/": "\u00f7\u0337\u0338\u2044\u2215\u29f8\uff0f",
    "1/4": "\u00bc",
    "1/2": "\u00bd",
    "3/4": "\u00be",
    "\\": "\u20e5\u29f5\u29f9\ufe68\uff3c",
    "_": "\u0332\u2017\uff3f",
    "|": "\u20d2\u20d3\u2223\u239c\u239f\u23b8\u23b9\u23d0\uff5c",
    "@": "\ufe6b\uff20",
    "$": "\ufe69\uff04",
    "!": "\u01c3\ufe15\ufe57\uff01",
    "!!": "\u203c",
    "#": "\ufe5f\uff03",
    "%": "\ufe6a\uff05",
    "&": "\ufe60\uff06",
    ",": "\u0326\u201a\u3001\ufe50\ufe51\uff0c\uff64",
    "(": "\u2768\u276a\u27ee\u2985\ufe59\uff08",
    ")": "\u2769\u276b\u27ef\u2986\ufe5a\uff09",
    "*": (
        "\u204e\u2217\u229b\u2722\u2723\u2724\u2725\u2731\u2732\u2733\u273a\u273b\u273c"
        "\u273d\u2743\u2749\u274a\u274b\u29c6\ufe61\uff0a"
    ),
    "+": "\u02d6\ufe62\uff0b",
    ".": "\u3002\ufe52\uff0e\uff61",
    ":": "\u02d0\u02f8\u2982\ua789\ufe13\uff1a",
    ";": "\u204f\ufe14\ufe54\uff1b",
    "<": "\u2039\ufe64\uff1c",
    "=": "\u0347\ua78a\ufe66\uff1d",
    ">": "\u203a\ufe65\uff1e",
    "?": "\ufe16\ufe56\uff1f",
    "^": "\u02c6\u0302\u1dcd\uff3e",
    "{": "\u2774\ufe5b\uff5b",
    "}": "\u2775\ufe5c\uff5d",
    "[": "\uff3b",
    "]": "\uff3d",
    "~": "\u02dc\u02f7\u0303\u0330\u0334\u223c\uff5e",
}

# Letters: LATIN LETTER SMALL CAPITAL x (there is none for Q and X in the list).
_SMALL_CAPITALS = {
    "A": "\u1d00", "B": "\u0299", "C": "\u1d04", "D": "\u1d05", "E": "\u1d07", "F": "\ua730",
    "G": "\u0262", "H": "\u029c", "I": "\u026a", "J": "\u1d0a", "K": "\u1d0b", "L": "\u029f",
    "M": "\u1d0d", "N": "\u0274", "O": "\u1d0f", "P": "\u1d18", "R": "\u0280", "S": "\ua731",
    "T": "\u1d1b", "U": "\u1d1c", "V": "\u1d20", "W": "\u1d21", "Y": "\u028f", "Z": "\u1d22",
}  # fmt: skip


def _build_smart_table() -> dict[int, str]:
    table = {ord(ch): repl for repl, chars in _SMART_GROUPS.items() for ch in chars}
    table.update({ord(small): letter for letter, small in _SMALL_CAPITALS.items()})
    # FULLWIDTH DIGIT ZERO..NINE and FULLWIDTH LATIN CAPITAL LETTER A..Z sit at a fixed
    # offset from their ASCII forms.
    for ascii_char in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        table[ord(ascii_char) + 0xFEE0] = ascii_char
    return table


_SMART_TABLE = _build_smart_table()


def smart_encode(text: str) -> str:
    """Replace look-alike characters with GSM-7 ones, as Twilio's Smart Encoding does.

    Why: one curly quote pasted from a word processor turns a whole message into UCS-2 and
    can more than double its segments. Characters with no look-alike (accents outside GSM-7,
    emoji, CJK) are left as they are, so such a text stays UCS-2.
    """
    return text.translate(_SMART_TABLE)
