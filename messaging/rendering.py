"""Personalization tags: `{first_name|there}`, `{points_balance}`, `{link:https://…}`, …

A template is checked when it is saved (`unknown_tags`), so a typo is an error for the
marketer, not a blank in a customer's text. `{{` and `}}` write literal braces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

# Tag → what it means (shown in the composer's help).
TAGS = {
    "first_name": "The member's first name",
    "last_name": "The member's last name",
    "points_balance": "Points the member can spend now",
    "points_name": "What the program calls its points",
    "vip_tier": "The member's tier",
    "tier_perks": "The perks of the member's tier, as the tier describes them",
    "next_tier": "The tier above the member's",
    "points_to_next_tier": "Points still needed for the next tier",
    "points_expiring": "Points expiring next",
    "points_expiring_date": "When those points expire",
    "reward_code": "The reward code the message is about",
    "brand": "The brand's name",
}
# Sample values for previews without a member.
SAMPLE = {
    "first_name": "Jamie",
    "last_name": "Rivera",
    "points_balance": "1,250",
    "points_name": "points",
    "vip_tier": "Gold",
    "tier_perks": "Free shipping on every order",
    "next_tier": "Platinum",
    "points_to_next_tier": "250",
    "points_expiring": "300",
    "points_expiring_date": "Dec 31",
    "reward_code": "RWD-7K2M9Q",
    "brand": "Your Brand",
}

# {name}, {name|fallback} or {link:url}; the fallback may hold anything but braces.
TAG = re.compile(r"\{(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)(?:\|(?P<fallback>[^{}]*))?\}")
LINK = re.compile(r"\{link:(?P<url>https?://[^\s{}]+)\}")
ANY_BRACED = re.compile(r"\{[^{}]*\}")
URL = re.compile(r"https?://[^\s<>\"']+")
_TRAILING = ".,;:!?)]'\""


def unknown_tags(template: str) -> list[str]:
    """Every `{…}` that isn't a known tag, in order of appearance."""
    text = template.replace("{{", "").replace("}}", "")
    text = LINK.sub("", text)
    unknown = []
    for match in ANY_BRACED.finditer(text):
        tag = TAG.fullmatch(match.group())
        if (tag is None or tag.group("name") not in TAGS) and match.group() not in unknown:
            unknown.append(match.group())
    return unknown


def render(template: str, values: Mapping[str, object]) -> str:
    """The template with its tags filled in; a missing value falls back to the tag's fallback,
    or to nothing. Link tags become their plain URL (shortened later, per recipient)."""
    placeholder_open, placeholder_close = "\x00", "\x01"
    text = template.replace("{{", placeholder_open).replace("}}", placeholder_close)
    text = LINK.sub(lambda m: m.group("url"), text)

    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in TAGS:
            return match.group()
        value = values.get(name)
        if value is None or value == "":
            return match.group("fallback") or ""
        return str(value)

    text = TAG.sub(fill, text)
    return text.replace(placeholder_open, "{").replace(placeholder_close, "}")


def replace_urls(text: str, shorten: Callable[[str], str]) -> str:
    """Every URL in the text replaced by shorten(url) (trailing punctuation stays outside)."""

    def swap(match: re.Match) -> str:
        url = match.group()
        trail = ""
        while url and url[-1] in _TRAILING:
            trail = url[-1] + trail
            url = url[:-1]
        return shorten(url) + trail

    return URL.sub(swap, text)


def with_footer(text: str, footer: str) -> str:
    """A marketing text ends with opt-out language, unless it already says STOP."""
    if not footer or re.search(r"\bSTOP\b", text):
        return text
    return f"{text}\n{footer}"
