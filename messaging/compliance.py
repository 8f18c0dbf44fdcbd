"""When a marketing text may go out (compliance.md), as pure functions of time and place.

The dispatcher asks `next_send_time(...)` for each due marketing text; a time later than now
defers the text to that moment (never drops it). Transactional texts skip these rules but
never an opt-out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import geocoder
from phonenumbers import timezone as number_timezones

# States whose own law ends the day at 20:00 (federal: 21:00).
EARLY_END_STATES = frozenset({"FL", "OK", "WA", "MD", "CT"})
# States that cap marketing texts at 3 per rolling 24 hours by law.
DAILY_CAP_STATES = frozenset({"FL", "OK"})
STATE_DAILY_CAP = 3

# A number that could be anywhere in its country (toll-free, non-geographic): the zones where
# nearly everyone lives; the send window is the hours legal in all of them.
COUNTRY_ZONES = {
    "US": (
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Phoenix",
        "America/Los_Angeles",
        "America/Anchorage",
        "Pacific/Honolulu",
    ),
    "CA": (
        "America/St_Johns",
        "America/Halifax",
        "America/Toronto",
        "America/Winnipeg",
        "America/Regina",
        "America/Edmonton",
        "America/Vancouver",
    ),
}
MAX_NUMBER_ZONES = 8

US_STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH",
    "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY", "North Carolina": "NC",
    "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA",
    "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN",
    "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington State": "WA",
    "Washington": "WA", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
    "Washington D.C.": "DC", "District of Columbia": "DC",
}  # fmt: skip
# Major-city descriptions ("New York, NY") end in the state's code.
_STATE_CODES = frozenset(US_STATES.values())


@dataclass(frozen=True)
class Place:
    """Where a number is, as far as its digits tell."""

    country: str  # ISO 3166 alpha-2, or "" when unknown
    region: str  # US state code when known
    zones: tuple[str, ...]  # candidate IANA zones; empty when the number doesn't say


@lru_cache(maxsize=65536)  # bounded: a long-lived worker sees millions of numbers
def place_of(e164: str) -> Place:
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return Place("", "", ())
    country = phonenumbers.region_code_for_number(number) or ""
    zones = tuple(z for z in number_timezones.time_zones_for_number(number) if z != "Etc/Unknown")
    if len(zones) > MAX_NUMBER_ZONES:
        zones = COUNTRY_ZONES.get(country, ())
    region = ""
    if country == "US":
        description = geocoder.description_for_number(number, "en")
        region = US_STATES.get(description, "")
        if not region and description[-4:-2] == ", " and description[-2:] in _STATE_CODES:
            region = description[-2:]
    return Place(country, region, zones)


@dataclass(frozen=True)
class Window:
    """The local hours a marketing text may go out: [start, end)."""

    start_hour: int
    end_hour: int


def window_for(region: str, start_hour: int, end_hour: int) -> Window:
    """The brand's window, narrowed by the recipient's state law."""
    if region in EARLY_END_STATES:
        end_hour = min(end_hour, 20)
    return Window(start_hour, end_hour)


def recipient_zones(stored: str, place: Place, brand_zone: str) -> tuple[str, ...]:
    """A stored zone wins; then the number's candidates; then the brand's own zone."""
    if stored:
        return (stored,)
    return place.zones or (brand_zone,)


def _allowed(moment: datetime, zone: ZoneInfo, window: Window) -> bool:
    local = moment.astimezone(zone)
    return time(window.start_hour) <= local.time() < time(window.end_hour)


def next_window_time(now: datetime, zones: Sequence[str], window: Window) -> datetime | None:
    """The first moment ≥ now at which the local time is inside the window in every zone.

    None when the zones share no legal hour at all. The answer is either now or the start of
    the window in one of the zones, so only those moments need checking.
    """
    tzs = [ZoneInfo(zone) for zone in zones]
    candidates = [now]
    for tz in tzs:
        local_day = now.astimezone(tz).date()
        for offset in range(-1, 4):
            day = local_day + timedelta(days=offset)
            start = datetime.combine(day, time(window.start_hour), tzinfo=tz)
            if start >= now:
                candidates.append(start)
    for moment in sorted(candidates):
        if all(_allowed(moment, tz, window) for tz in tzs):
            # In UTC: arithmetic on a datetime in a zone is wall-clock arithmetic, and "24 hours
            # before" a moment after a DST change would be 23 or 25 real hours.
            return moment.astimezone(UTC)
    return None


def marketing_send_time(
    now: datetime,
    *,
    zones: Sequence[str],
    brand_zone: str,
    window: Window,
    recent_sends: Sequence[datetime],
    cap_messages: int,
    cap_hours: int,
    region: str,
) -> datetime:
    """The earliest moment ≥ now a marketing text may go to this recipient: inside the send
    window in the recipient's zone(s) and under every frequency cap. Caps and windows interact
    (waiting for a cap can land outside the window), so both are checked until they agree."""
    recent = sorted(recent_sends)
    moment = now.astimezone(UTC)
    for _ in range(16):
        earliest = moment
        for limit, hours in _caps(cap_messages, cap_hours, region):
            window_start = earliest - timedelta(hours=hours)
            inside = [sent for sent in recent if sent > window_start]
            if len(inside) >= limit:
                # The oldest sends must leave the window before there is room again.
                earliest = max(earliest, inside[len(inside) - limit] + timedelta(hours=hours))
        allowed = next_window_time(earliest, zones, window)
        if allowed is None:
            allowed = next_window_time(earliest, (brand_zone,), window)
        if allowed == moment:
            return moment
        moment = allowed
    return moment


def _caps(cap_messages: int, cap_hours: int, region: str) -> list[tuple[int, int]]:
    caps = [(cap_messages, cap_hours)]
    if region in DAILY_CAP_STATES:
        caps.append((STATE_DAILY_CAP, 24))
    return caps
