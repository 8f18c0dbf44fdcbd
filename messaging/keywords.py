"""What an inbound text asks for (compliance.md, Keywords).

A keyword counts when it is the whole message, ignoring case, spaces and punctuation
("Stop.", " s t o p ", "Opt-Out!" all match). Free text that clearly asks to stop is an
opt-out too (FCC 24-18: revocation by any reasonable means); text that only might be one is
flagged for a person.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from enum import StrEnum


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"  # START / YES / UNSTOP
    CONFIRM = "confirm"  # Y / YES while a double opt-in is pending
    HELP = "help"
    JOIN = "join"  # one of the brand's own keywords
    REPLY = "reply"  # anything else: the inbox
    AMBIGUOUS = "ambiguous"  # a reply that might be an opt-out: flagged for a person


OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
CONFIRM_KEYWORDS = frozenset({"Y", "YES"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
RESERVED = OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS | CONFIRM_KEYWORDS | HELP_KEYWORDS

_WORDS = r"(?:texts?|txts?|messages?|msgs?|sms|marketing)"
CLEAR_OPT_OUT = re.compile(
    "|".join(
        [
            r"\b(?:stop|quit|cease|end)\s+(?:texting|txting|messaging|msging|sending|contacting)\b",
            r"\bunsubscribe\s+(?:me|this|my)\b",
            r"\b(?:please|pls|plz)\s+unsubscribe\b",
            r"\bremove\s+(?:me|my\s+(?:number|phone))\b",
            r"\btake\s+me\s+off\b",
            r"\bopt\s*-?\s*me\s+out\b",
            rf"\bno\s+more\s+{_WORDS}\b",
            r"\b(?:don'?t|do\s+not|never)\s+(?:text|txt|message|msg|contact|sms)\s+me\b",
            rf"\bstop\s+(?:the|these|all|your)\s+{_WORDS}\b",
            r"\bi\s+want\s+to\s+(?:unsubscribe|opt\s*out)\b",
        ]
    ),
    re.IGNORECASE,
)
MIGHT_OPT_OUT = re.compile(
    r"\b(?:stop|unsubscribe|cancel|quit|remove|opt\s*-?\s*out|wrong\s+number|leave\s+me\s+alone"
    r"|spam|who\s+is\s+this|lawyer|sue|report)\b",
    re.IGNORECASE,
)


def normalize(body: str) -> str:
    """The message as a keyword candidate: letters and digits only, upper case."""
    folded = unicodedata.normalize("NFKC", body)
    return "".join(ch for ch in folded if ch.isalnum()).upper()


def normalize_keyword(keyword: str) -> str:
    return normalize(keyword)


def classify(body: str, *, join_keywords: Iterable[str] = (), pending: bool = False) -> Intent:
    """The intent of an inbound text. `pending`: the number has an unconfirmed opt-in."""
    word = normalize(body)
    if word in OPT_OUT_KEYWORDS:
        return Intent.OPT_OUT
    if pending and word in CONFIRM_KEYWORDS:
        return Intent.CONFIRM
    if word in OPT_IN_KEYWORDS:
        return Intent.OPT_IN
    if word in HELP_KEYWORDS:
        return Intent.HELP
    if word and word in {normalize_keyword(k) for k in join_keywords}:
        return Intent.JOIN
    if CLEAR_OPT_OUT.search(body):
        return Intent.OPT_OUT
    if MIGHT_OPT_OUT.search(body):
        return Intent.AMBIGUOUS
    return Intent.REPLY
