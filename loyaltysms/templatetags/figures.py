"""Template filters for figures: a rate as a percentage, "—" where there is none."""

from django import template

register = template.Library()


@register.filter
def percent(rate, places: int = 1) -> str:
    """0.1234 → "12.3 %"; None (a rate of nothing, e.g. no texts delivered) → "—"."""
    if rate is None or rate == "":
        return "—"
    return f"{float(rate) * 100:.{int(places)}f} %"
