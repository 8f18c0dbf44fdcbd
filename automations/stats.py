"""What campaigns earned: per-campaign and brand-wide figures, their CSV, and the `orders` and
`revenue` A/B winner metrics — all from attributions (messaging/attribution.py).

Definitions (the same for a campaign and for the brand):
- sent: texts handed to the carrier (sent, delivered, undelivered, failed by the carrier,
  outcome unknown); delivered, failed (failed + undelivered); delivery rate = delivered / sent.
- unique clicks: texts with a tracked link clicked at least once; CTR = unique clicks /
  delivered.
- replies and opt-outs: texts whose number replied / opted out within the brand's click
  window after the text was sent; rates over delivered.
- attributed orders and revenue (net of refunds); conversion rate = orders / delivered.
- cost = segments of the sent texts × the brand's price per segment; ROI = (revenue - cost) /
  cost.
- holdout (campaigns with one): revenue per recipient of the texted members and of the
  holdout in the click window after the audience was frozen, counting every order (attributed
  or not); incremental revenue = the difference × texted recipients.
Every figure is a grouped query over the rows, never a Python loop over recipients.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection

from automations.metrics import dedupe_prefix, register_winner_metric
from automations.models import Campaign, RecipientGroup, WinnerMetric
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.attribution import LOOKBACK, attribute_orders, windows
from messaging.models import ConsentAction, InboundKind, MessageKind, MessageStatus
from messaging.selectors import HANDED_OVER, SENT_STATUSES
from messaging.services.setup import messaging_settings_get

FAILED_STATUSES = (MessageStatus.FAILED, MessageStatus.UNDELIVERED)
# "Sent" is HANDED_OVER (messaging.selectors): handed to the carrier and paid for, the rule
# the usage page bills by.

# The counters of a set of texts `o` (the FROM/WHERE is the caller's).
COUNTER_COLUMNS = """
       count(*) FILTER (WHERE {handed_over}),
       count(*) FILTER (WHERE o.status = %(delivered)s),
       count(*) FILTER (WHERE o.status = ANY(%(failed)s)),
       coalesce(sum(o.segments) FILTER (WHERE {handed_over}), 0),
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM messaging_shortlink l
           WHERE l.tenant_id = o.tenant_id AND l.message_dedupe_key = o.dedupe_key
             AND l.first_clicked_at IS NOT NULL)),
       count(*) FILTER (WHERE o.sent_at IS NOT NULL AND EXISTS (
           SELECT 1 FROM messaging_inboundmessage i
           WHERE i.tenant_id = o.tenant_id AND i.subscriber_id = o.subscriber_id
             AND i.kind = %(reply)s AND i.created_at >= o.sent_at
             AND i.created_at < o.sent_at + %(window)s)),
       count(*) FILTER (WHERE o.sent_at IS NOT NULL AND EXISTS (
           SELECT 1 FROM messaging_consentrecord c
           WHERE c.tenant_id = o.tenant_id AND c.subscriber_id = o.subscriber_id
             AND c.action = %(opt_out)s AND c.created_at >= o.sent_at
             AND c.created_at < o.sent_at + %(window)s))
""".replace("{handed_over}", HANDED_OVER)
TEXT_COUNTERS = "\nSELECT" + COUNTER_COLUMNS
CAMPAIGN_TEXTS = (
    TEXT_COUNTERS
    + """
FROM automations_campaignrecipient r JOIN messaging_outboundmessage o
  ON o.tenant_id = r.tenant_id AND o.dedupe_key = %(prefix)s || r.subscriber_id
WHERE r.tenant_id = %(tenant)s AND r.campaign_id = %(campaign)s AND r."group" = ANY(%(texted)s)
"""
)
CAMPAIGN_ATTRIBUTED = """
SELECT count(*), coalesce(sum(revenue), 0) FROM messaging_attribution
WHERE tenant_id = %(tenant)s AND source = 'campaign' AND source_ref = %(ref)s
"""
# Per group kind (texted or held out): recipients, and the revenue of their members' orders
# placed in the window.
HOLDOUT = """
SELECT r."group" = ANY(%(texted)s), count(DISTINCT r.id),
       coalesce(sum(o.subtotal - o.refunded_amount), 0)
FROM automations_campaignrecipient r
JOIN messaging_subscriber s ON s.tenant_id = r.tenant_id AND s.id = r.subscriber_id
LEFT JOIN programs_order o
  ON o.tenant_id = s.tenant_id AND o.member_id = s.member_id
 AND o.placed_at >= %(start)s AND o.placed_at < %(end)s
WHERE r.tenant_id = %(tenant)s AND r.campaign_id = %(campaign)s
  AND r."group" = ANY(%(compared)s)
GROUP BY 1
"""
TENANT_TEXTS = (
    TEXT_COUNTERS
    + """
FROM messaging_outboundmessage o
WHERE o.tenant_id = %(tenant)s AND o.kind = %(marketing)s
  AND o.created_at >= %(start)s AND o.created_at < %(end)s
"""
)
TENANT_ATTRIBUTED = """
SELECT count(*), coalesce(sum(revenue), 0) FROM messaging_attribution
WHERE tenant_id = %(tenant)s AND placed_at >= %(start)s AND placed_at < %(end)s
"""
# Per day in the brand's zone: marketing texts sent and delivered, unique clicks, list growth
# (numbers subscribed, opted out, the difference), attributed orders and revenue.
TENANT_DAILY = """
WITH texts AS (
    SELECT (o.created_at AT TIME ZONE %(zone)s)::date AS day,
           count(*) FILTER (WHERE {handed_over}) AS sent,
           count(*) FILTER (WHERE o.status = %(delivered)s) AS delivered,
           count(*) FILTER (WHERE EXISTS (
               SELECT 1 FROM messaging_shortlink l
               WHERE l.tenant_id = o.tenant_id AND l.message_dedupe_key = o.dedupe_key
                 AND l.first_clicked_at IS NOT NULL)) AS clicks
    FROM messaging_outboundmessage o
    WHERE o.tenant_id = %(tenant)s AND o.kind = %(marketing)s
      AND o.created_at >= %(start)s AND o.created_at < %(end)s
    GROUP BY 1
), consent AS (
    SELECT (c.created_at AT TIME ZONE %(zone)s)::date AS day,
           count(*) FILTER (WHERE c.action = ANY(%(joined)s)) AS joined,
           count(*) FILTER (WHERE c.action = %(opt_out)s) AS opt_outs
    FROM messaging_consentrecord c
    WHERE c.tenant_id = %(tenant)s AND (c.action = ANY(%(joined)s) OR c.action = %(opt_out)s)
      AND c.created_at >= %(start)s AND c.created_at < %(end)s
    GROUP BY 1
), orders AS (
    SELECT (a.placed_at AT TIME ZONE %(zone)s)::date AS day, count(*) AS orders,
           sum(a.revenue) AS revenue
    FROM messaging_attribution a
    WHERE a.tenant_id = %(tenant)s AND a.placed_at >= %(start)s AND a.placed_at < %(end)s
    GROUP BY 1
)
SELECT day, coalesce(t.sent, 0), coalesce(t.delivered, 0), coalesce(t.clicks, 0),
       coalesce(x.joined, 0), coalesce(x.opt_outs, 0),
       coalesce(x.joined, 0) - coalesce(x.opt_outs, 0),
       coalesce(r.orders, 0), coalesce(r.revenue, 0)
FROM texts t FULL JOIN consent x USING (day) FULL JOIN orders r USING (day)
ORDER BY day
""".replace("{handed_over}", HANDED_OVER)


def _rate(part: float, whole: float) -> float | None:
    return None if not whole else float(part) / float(whole)


@dataclass(frozen=True)
class Stats:
    sent: int
    delivered: int
    failed: int
    unique_clicks: int
    replies: int
    opt_outs: int
    attributed_orders: int
    revenue: Decimal
    cost: Decimal
    # Campaigns with a holdout (None otherwise).
    texted_recipients: int | None = None
    holdout_recipients: int | None = None
    revenue_per_texted: Decimal | None = None
    revenue_per_holdout: Decimal | None = None
    incremental_revenue: Decimal | None = None

    @property
    def delivery_rate(self) -> float | None:
        return _rate(self.delivered, self.sent)

    @property
    def ctr(self) -> float | None:
        return _rate(self.unique_clicks, self.delivered)

    @property
    def reply_rate(self) -> float | None:
        return _rate(self.replies, self.delivered)

    @property
    def opt_out_rate(self) -> float | None:
        return _rate(self.opt_outs, self.delivered)

    @property
    def conversion_rate(self) -> float | None:
        return _rate(self.attributed_orders, self.delivered)

    @property
    def roi(self) -> float | None:
        return _rate(self.revenue - self.cost, self.cost)

    def rows(self) -> list[tuple[str, object]]:
        """(metric, value), the rates after the counters they come from."""
        values = asdict(self)
        for name in ("delivery_rate", "ctr", "opt_out_rate", "conversion_rate", "roi"):
            values[name] = getattr(self, name)
        return list(values.items())


def _params(tenant: Tenant) -> dict:
    click_window, _ = windows(tenant)
    return {
        "tenant": tenant.pk,
        "sent": [s.value for s in SENT_STATUSES],
        "delivered": MessageStatus.DELIVERED.value,
        "failed": [s.value for s in FAILED_STATUSES],
        "reply": InboundKind.REPLY.value,
        "opt_out": ConsentAction.OPT_OUT.value,
        "window": click_window,
        "marketing": MessageKind.MARKETING.value,
        "texted": [RecipientGroup.TEST.value, RecipientGroup.REMAINDER.value],
    }


def _stats(tenant: Tenant, texts: tuple, attributed: tuple, **holdout) -> Stats:
    sent, delivered, failed, segments, clicks, replies, opt_outs = texts
    price = messaging_settings_get(tenant).price_per_segment
    return Stats(
        sent=sent,
        delivered=delivered,
        failed=failed,
        unique_clicks=clicks,
        replies=replies,
        opt_outs=opt_outs,
        attributed_orders=attributed[0],
        revenue=Decimal(attributed[1]),
        cost=(segments * price).quantize(Decimal("0.00001")),
        **holdout,
    )


def campaign_stats(tenant: Tenant, campaign: Campaign) -> Stats:
    """A campaign's figures (module docstring): three or four grouped queries."""
    params = _params(tenant) | {
        "campaign": campaign.pk,
        "prefix": dedupe_prefix(campaign),
        "ref": str(campaign.pk),
    }
    with connection.cursor() as cursor:
        cursor.execute(CAMPAIGN_TEXTS, params)
        texts = cursor.fetchone()
        cursor.execute(CAMPAIGN_ATTRIBUTED, params)
        attributed = cursor.fetchone()
        holdout = {}
        if campaign.holdout_count and campaign.frozen_at is not None:
            cursor.execute(
                HOLDOUT,
                params
                | {
                    "start": campaign.frozen_at,
                    "end": campaign.frozen_at + params["window"],
                    "compared": params["texted"] + [RecipientGroup.HOLDOUT.value],
                },
            )
            holdout = _holdout(dict((texted, (n, rev)) for texted, n, rev in cursor.fetchall()))
    return _stats(tenant, texts, attributed, **holdout)


def _holdout(groups: dict[bool, tuple[int, Decimal]]) -> dict:
    texted, texted_revenue = groups.get(True, (0, Decimal(0)))
    held, held_revenue = groups.get(False, (0, Decimal(0)))
    if not texted or not held:
        return {}
    per_texted = Decimal(texted_revenue) / texted
    per_held = Decimal(held_revenue) / held
    cents = Decimal("0.01")
    return {
        "texted_recipients": texted,
        "holdout_recipients": held,
        "revenue_per_texted": per_texted.quantize(cents),
        "revenue_per_holdout": per_held.quantize(cents),
        "incremental_revenue": ((per_texted - per_held) * texted).quantize(cents),
    }


def tenant_stats(tenant: Tenant, start: datetime, end: datetime) -> Stats:
    """The brand's marketing texts created in [start, end) and the orders placed then that
    were attributed (to any text)."""
    params = _params(tenant) | {"start": start, "end": end}
    with connection.cursor() as cursor:
        cursor.execute(TENANT_TEXTS, params)
        texts = cursor.fetchone()
        cursor.execute(TENANT_ATTRIBUTED, params)
        attributed = cursor.fetchone()
    return _stats(tenant, texts, attributed)


# Per campaign of a list: the counters of its texted recipients' texts (CAMPAIGN_TEXTS for
# many campaigns at once; the text of a recipient is found by its dedupe key, as there).
CAMPAIGNS_TEXTS = (
    "SELECT r.campaign_id,"
    + COUNTER_COLUMNS
    + """
FROM automations_campaignrecipient r JOIN messaging_outboundmessage o
  ON o.tenant_id = r.tenant_id
 AND o.dedupe_key = 'campaign:' || r.campaign_id || ':' || r.subscriber_id
WHERE r.tenant_id = %(tenant)s AND r.campaign_id = ANY(%(campaigns)s)
  AND r."group" = ANY(%(texted)s)
GROUP BY r.campaign_id
"""
)
CAMPAIGNS_ATTRIBUTED = """
SELECT source_ref, count(*), coalesce(sum(revenue), 0) FROM messaging_attribution
WHERE tenant_id = %(tenant)s AND source = 'campaign' AND source_ref = ANY(%(refs)s)
GROUP BY source_ref
"""
# The campaigns table of the analytics page lists at most this many (the newest).
CAMPAIGN_TABLE_LIMIT = 50


def campaign_table(
    tenant: Tenant, start: datetime, end: datetime, *, limit: int = CAMPAIGN_TABLE_LIMIT
) -> list[tuple[Campaign, Stats]]:
    """The campaigns launched in [start, end), newest first (at most `limit`), each with its
    figures as campaign_stats counts them (without the holdout comparison): three queries
    whatever the number of campaigns or texts."""
    with tenant_scope(tenant):
        campaigns = list(
            Campaign.objects.filter(launched_at__gte=start, launched_at__lt=end).order_by(
                "-launched_at", "-pk"
            )[:limit]
        )
    params = _params(tenant) | {
        "campaigns": [c.pk for c in campaigns],
        "refs": [str(c.pk) for c in campaigns],
    }
    with connection.cursor() as cursor:
        cursor.execute(CAMPAIGNS_TEXTS, params)
        texts = {row[0]: row[1:] for row in cursor.fetchall()}
        cursor.execute(CAMPAIGNS_ATTRIBUTED, params)
        attributed = {ref: (n, revenue) for ref, n, revenue in cursor.fetchall()}
    nothing = (0, 0, 0, 0, 0, 0, 0)
    return [
        (
            campaign,
            _stats(
                tenant,
                texts.get(campaign.pk, nothing),
                attributed.get(str(campaign.pk), (0, Decimal(0))),
            ),
        )
        for campaign in campaigns
    ]


DAILY_COLUMNS = (
    "day",
    "sent",
    "delivered",
    "unique_clicks",
    "subscribed",
    "opt_outs",
    "list_growth",
    "orders",
    "revenue",
)
# Consent records that add a number to the list (a pending double opt-in does not yet).
JOINED = (ConsentAction.OPT_IN, ConsentAction.OPT_IN_CONFIRMED, ConsentAction.IMPORTED)


def tenant_daily(tenant: Tenant, start: datetime, end: datetime) -> list[tuple]:
    """Per day in the brand's zone (days with anything): DAILY_COLUMNS."""
    params = _params(tenant) | {
        "start": start,
        "end": end,
        "zone": tenant.timezone,
        "joined": [a.value for a in JOINED],
    }
    with connection.cursor() as cursor:
        cursor.execute(TENANT_DAILY, params)
        return cursor.fetchall()


def _csv(header: tuple, rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(("" if v is None else v for v in row) for row in rows)
    return out.getvalue()


def campaign_stats_csv(tenant: Tenant, campaign: Campaign) -> str:
    return _csv(("metric", "value"), campaign_stats(tenant, campaign).rows())


def tenant_stats_csv(tenant: Tenant, start: datetime, end: datetime) -> str:
    return _csv(("metric", "value"), tenant_stats(tenant, start, end).rows())


def tenant_daily_csv(tenant: Tenant, start: datetime, end: datetime) -> str:
    return _csv(DAILY_COLUMNS, tenant_daily(tenant, start, end))


# --- A/B winner metrics -------------------------------------------------------------------

# Per variant: test recipients, and the attributed orders and revenue of their texts placed by
# the moment.
VARIANT_ATTRIBUTED = """
SELECT r.variant_id, count(DISTINCT r.id), count(a.id), coalesce(sum(a.revenue), 0)
FROM automations_campaignrecipient r
LEFT JOIN messaging_outboundmessage m
  ON m.tenant_id = r.tenant_id AND m.dedupe_key = %(prefix)s || r.subscriber_id
LEFT JOIN messaging_attribution a
  ON a.tenant_id = m.tenant_id AND a.message_id = m.id AND a.placed_at <= %(now)s
WHERE r.tenant_id = %(tenant)s AND r.campaign_id = %(campaign)s AND r."group" = %(test)s
GROUP BY r.variant_id
"""


def _variant_attributed(campaign: Campaign, now: datetime) -> list[tuple]:
    # The beat scan may be up to a minute behind: attribute the orders since the test texts
    # first, so the decision sees every order placed by its moment.
    since = (campaign.test_created_at or campaign.launched_at or now) - LOOKBACK
    attribute_orders(tenant=campaign.tenant, since=since)
    with connection.cursor() as cursor:
        cursor.execute(
            VARIANT_ATTRIBUTED,
            {
                "prefix": dedupe_prefix(campaign),
                "now": now,
                "tenant": campaign.tenant_id,
                "campaign": campaign.pk,
                "test": RecipientGroup.TEST.value,
            },
        )
        return cursor.fetchall()


def orders_per_recipient(campaign: Campaign, now: datetime) -> dict[int, float]:
    return {
        variant_id: orders / texted
        for variant_id, texted, orders, _ in _variant_attributed(campaign, now)
        if variant_id is not None and texted
    }


def revenue_per_recipient(campaign: Campaign, now: datetime) -> dict[int, float]:
    return {
        variant_id: float(revenue) / texted
        for variant_id, texted, _, revenue in _variant_attributed(campaign, now)
        if variant_id is not None and texted
    }


register_winner_metric(WinnerMetric.ORDERS, orders_per_recipient)
register_winner_metric(WinnerMetric.REVENUE, revenue_per_recipient)
