"""The analytics page: what the brand's texts did in a period (every figure of automations/stats.py,
daily charts, the campaigns launched then) and the same figures as CSV.

The period is whole days in the brand's zone: the last 7, 30 or 90 days (today included), or
from one date to another. Every figure comes from a fixed set of grouped queries, whatever the
number of texts or campaigns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django import forms
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from automations import stats
from loyaltysms.views import tenant_view
from messaging.attribution import windows
from programs.services.program import program_get

PRESETS = {"7": 7, "30": 30, "90": 90}
DEFAULT_PRESET = "30"
LONGEST_PERIOD_DAYS = 366


class PeriodForm(forms.Form):
    """Last 7 / 30 / 90 days, or custom dates (both needed; at most a year)."""

    period = forms.ChoiceField(
        choices=[
            ("7", "Last 7 days"),
            ("30", "Last 30 days"),
            ("90", "Last 90 days"),
            ("custom", "Custom dates"),
        ],
        required=False,
    )
    start = forms.DateField(label="From", required=False, widget=forms.DateInput({"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput({"type": "date"}))

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if self.errors:
            return data
        if data.get("period") == "custom" or (not data.get("period") and (start or end)):
            if start is None or end is None:
                raise forms.ValidationError("Give both dates, or choose one of the periods.")
            if end < start:
                self.add_error("end", "The end date is before the start date.")
            elif (end - start).days + 1 > LONGEST_PERIOD_DAYS:
                self.add_error("end", f"Choose at most {LONGEST_PERIOD_DAYS} days.")
            data["period"] = "custom"
        elif not data.get("period"):
            data["period"] = DEFAULT_PRESET
        return data


@dataclass(frozen=True)
class Period:
    key: str  # "7", "30", "90" or "custom"
    first: date  # days in the brand's zone, both included
    last: date
    start: datetime  # [start, end): the first day's midnight to the day after the last's
    end: datetime

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    @property
    def query(self) -> str:
        """This period as the picker's query string (for the CSV links)."""
        if self.key == "custom":
            return f"period=custom&start={self.first.isoformat()}&end={self.last.isoformat()}"
        return f"period={self.key}"


def _period(form: PeriodForm, zone: ZoneInfo) -> Period:
    data = form.cleaned_data
    if data["period"] == "custom":
        first, last = data["start"], data["end"]
    else:
        last = timezone.now().astimezone(zone).date()
        first = last - timedelta(days=PRESETS[data["period"]] - 1)
    return Period(
        key=data["period"],
        first=first,
        last=last,
        start=datetime.combine(first, time.min, tzinfo=zone),
        end=datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone),
    )


def _period_form(request) -> tuple[PeriodForm, Period | None]:
    form = PeriodForm(request.GET or {"period": DEFAULT_PRESET})
    if not form.is_valid():
        return form, None
    return form, _period(form, ZoneInfo(request.tenant.timezone))


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def _cards(figures: stats.Stats, growth: dict, currency: str) -> list[dict]:
    """The summary cards: a figure, its label and what it is out of."""
    return [
        {"label": "Sent", "value": f"{figures.sent:,}", "sub": "handed to the carrier"},
        {
            "label": "Delivered",
            "value": f"{figures.delivered:,}",
            "sub": f"{_percent(figures.delivery_rate)} delivery rate · {figures.failed:,} failed",
        },
        {
            "label": "Unique clicks",
            "value": f"{figures.unique_clicks:,}",
            "sub": f"{_percent(figures.ctr)} of delivered (CTR)",
        },
        {
            "label": "Replies",
            "value": f"{figures.replies:,}",
            "sub": f"{_percent(figures.reply_rate)} of delivered",
        },
        {
            "label": "Opt-outs",
            "value": f"{figures.opt_outs:,}",
            "sub": f"{_percent(figures.opt_out_rate)} of delivered (opt-out rate)",
        },
        {
            "label": "Attributed orders",
            "value": f"{figures.attributed_orders:,}",
            "sub": f"{_percent(figures.conversion_rate)} of delivered (conversion rate)",
        },
        {"label": "Revenue", "value": _money(figures.revenue, currency), "sub": "net of refunds"},
        {
            "label": "Cost",
            "value": _money(figures.cost, currency),
            "sub": "segments sent × price per segment",
        },
        {"label": "ROI", "value": _percent(figures.roi), "sub": "(revenue - cost) / cost"},
        {
            "label": "List growth",
            "value": f"{growth['net']:+,}",
            "sub": f"{growth['subscribed']:,} subscribed · {growth['opt_outs']:,} opted out",
        },
    ]


def _daily_series(rows: list[tuple], period: Period) -> dict:
    """Every day of the period (zeros for a quiet one), as lists for the charts."""
    by_day = {row[0]: row for row in rows}
    columns = {name: [] for name in stats.DAILY_COLUMNS}
    for day in period.days:
        row = by_day.get(day)
        columns["day"].append(day.isoformat())
        for index, name in enumerate(stats.DAILY_COLUMNS[1:], start=1):
            value = row[index] if row else 0
            columns[name].append(float(value) if name == "revenue" else value)
    return columns


@require_GET
@tenant_view()
def analytics(request):
    tenant = request.tenant
    form, period = _period_form(request)
    context = {"form": form, "analytics_tab": True}
    if period is None:
        return render(request, "automations/analytics.html", context, status=400)
    if period.key != "custom":
        # The date fields show the preset's days, a starting point for custom dates.
        form = PeriodForm(initial={"start": period.first, "end": period.last})
        context["form"] = form
    currency = program_get(tenant).currency
    figures = stats.tenant_stats(tenant, period.start, period.end)
    rows = stats.tenant_daily(tenant, period.start, period.end)
    campaigns = stats.campaign_table(tenant, period.start, period.end)
    daily = _daily_series(rows, period)
    growth = {
        "subscribed": sum(daily["subscribed"]),
        "opt_outs": sum(daily["opt_outs"]),
        "net": sum(daily["list_growth"]),
    }
    click_window, delivery_window = windows(tenant)
    context |= {
        "period": period,
        "currency": currency,
        "figures": figures,
        "cards": _cards(figures, growth, currency),
        "daily": daily,
        "daily_rows": [
            dict(zip(stats.DAILY_COLUMNS, values, strict=True))
            for values in zip(*daily.values(), strict=True)
        ],
        "totals": {
            "sent": figures.sent,
            "delivered": figures.delivered,
            "clicks": sum(daily["unique_clicks"]),
            "orders": figures.attributed_orders,
            "revenue": _money(figures.revenue, currency),
            **growth,
        },
        "campaigns": [
            {
                "campaign": campaign,
                "figures": row,
                "delivery_rate": _percent(row.delivery_rate),
                "ctr": _percent(row.ctr),
                "opt_out_rate": _percent(row.opt_out_rate),
                "revenue": _money(row.revenue, currency),
                "roi": _percent(row.roi),
            }
            for campaign, row in campaigns
        ],
        "campaign_limit": stats.CAMPAIGN_TABLE_LIMIT,
        "click_days": click_window.days,
        "delivery_hours": int(delivery_window.total_seconds() // 3600),
        "nothing": not rows and not campaigns and not figures.sent,
    }
    with timezone.override(ZoneInfo(tenant.timezone)):
        return render(request, "automations/analytics.html", context)


def _csv_response(body: str, name: str, period: Period) -> HttpResponse:
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    filename = f"{name}-{period.first.isoformat()}-{period.last.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _bad_period(form: PeriodForm) -> HttpResponse:
    errors = [str(e) for field_errors in form.errors.values() for e in field_errors]
    return HttpResponse(
        "Bad period: " + " ".join(errors) + "\n",
        status=400,
        content_type="text/plain; charset=utf-8",
    )


@require_GET
@tenant_view()
def summary_csv(request):
    """metric,value for the period (the figures of the page's cards, rates as fractions)."""
    form, period = _period_form(request)
    if period is None:
        return _bad_period(form)
    body = stats.tenant_stats_csv(request.tenant, period.start, period.end)
    return _csv_response(body, "analytics-summary", period)


@require_GET
@tenant_view()
def daily_csv(request):
    """One row per day with anything (stats.DAILY_COLUMNS), days in the brand's zone."""
    form, period = _period_form(request)
    if period is None:
        return _bad_period(form)
    body = stats.tenant_daily_csv(request.tenant, period.start, period.end)
    return _csv_response(body, "analytics-daily", period)
