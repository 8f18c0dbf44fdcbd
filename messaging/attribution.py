"""Attribution: which marketing text earned an order.

The rule, per order (once; an order keeps its first attribution):
- a click on a tracked link of a marketing text within the brand's click window before the
  order (default 5 days) credits the text of the **last** such click;
- otherwise a marketing text delivered within the delivery window before the order (default
  24 h) credits the last such text;
- otherwise the order is not attributed.
An order placed before a click (or a delivery) is never credited to it. A link records its
first click only (messaging/links.py), so "the last click" is the latest first click among the
member's links.

Orders reach texts through the member's numbers (Subscriber.member). Messaging reads programs'
orders; programs knows nothing of this. One INSERT … SELECT per scan (of one brand, or of every
brand for beat), DISTINCT ON the order, ON CONFLICT DO NOTHING: a scan run twice, or two at
once, attributes each order once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from loyaltysms.models import Tenant
from messaging.models import AttributionKind, MessageKind, MessagingSettings
from messaging.services.setup import messaging_settings_get

# A scan looks this far back (by when we learned of each order): a delivery receipt that comes
# in after the order was recorded, or a storefront that reports an order late, still counts.
LOOKBACK = timedelta(hours=2)

# Candidates per order: every click in the click window (rank 0) and every delivery in the
# delivery window (rank 1); DISTINCT ON keeps the best rank, then the latest moment. Each
# brand's windows come from its settings (the defaults when it has none yet). {orders} picks
# the orders: one brand's, or every brand's for the beat scan.
ATTRIBUTE = """
WITH orders AS (
    SELECT o.tenant_id, o.id, o.member_id, o.placed_at, o.subtotal - o.refunded_amount AS revenue,
           make_interval(days => coalesce(w.attribution_click_days, %(click_days)s))
               AS click_window,
           make_interval(hours => coalesce(w.attribution_delivery_hours, %(delivery_hours)s))
               AS delivery_window
    FROM programs_order o
    LEFT JOIN messaging_messagingsettings w ON w.tenant_id = o.tenant_id
    WHERE {orders} AND o.created_at >= %(since)s
)
INSERT INTO messaging_attribution
    (tenant_id, order_id, message_id, kind, source, source_ref, revenue, placed_at,
     touched_at, attributed_at)
SELECT DISTINCT ON (c.order_pk)
       c.tenant_id, c.order_pk, m.id, c.kind, m.source, m.source_ref, c.revenue, c.placed_at,
       c.touched_at, %(now)s
FROM (
    SELECT o.tenant_id, o.id AS order_pk, o.revenue, o.placed_at, m.id AS message_pk,
           %(click)s AS kind, 0 AS rank, l.first_clicked_at AS touched_at
    FROM orders o
    JOIN messaging_subscriber s ON s.tenant_id = o.tenant_id AND s.member_id = o.member_id
    JOIN messaging_shortlink l ON l.tenant_id = s.tenant_id AND l.subscriber_id = s.id
    JOIN messaging_outboundmessage m
      ON m.tenant_id = l.tenant_id AND m.dedupe_key = l.message_dedupe_key
    WHERE l.first_clicked_at <= o.placed_at
      AND l.first_clicked_at > o.placed_at - o.click_window
      AND m.kind = %(marketing)s
    UNION ALL
    SELECT o.tenant_id, o.id, o.revenue, o.placed_at, m.id, %(delivery)s, 1, m.delivered_at
    FROM orders o
    JOIN messaging_subscriber s ON s.tenant_id = o.tenant_id AND s.member_id = o.member_id
    JOIN messaging_outboundmessage m ON m.tenant_id = s.tenant_id AND m.subscriber_id = s.id
    WHERE m.delivered_at <= o.placed_at
      AND m.delivered_at > o.placed_at - o.delivery_window
      AND m.kind = %(marketing)s
) c
JOIN messaging_outboundmessage m ON m.id = c.message_pk
ORDER BY c.order_pk, c.rank, c.touched_at DESC, c.message_pk DESC
ON CONFLICT (order_id) DO NOTHING
"""
# (orders, refunds) of one brand, or of every brand.
ONE_BRAND = ("o.tenant_id = %(tenant)s", "r.tenant_id = %(tenant)s")
EVERY_BRAND = ("TRUE", "TRUE")

# Refunds recorded since the scan's start take their share off the attributed revenue.
REFUNDED = """
UPDATE messaging_attribution a SET revenue = o.subtotal - o.refunded_amount
FROM programs_order o
WHERE o.tenant_id = a.tenant_id AND o.id = a.order_id
  AND a.revenue <> o.subtotal - o.refunded_amount
  AND o.id IN (SELECT r.order_id FROM programs_refund r
               WHERE {refunds} AND r.created_at >= %(since)s)
"""


def windows(tenant: Tenant) -> tuple[timedelta, timedelta]:
    """The brand's (click window, delivery window)."""
    settings = messaging_settings_get(tenant)
    return (
        timedelta(days=settings.attribution_click_days),
        timedelta(hours=settings.attribution_delivery_hours),
    )


def _default(field: str) -> int:
    return MessagingSettings._meta.get_field(field).default


def _attribute(where: tuple[str, str], params: dict) -> int:
    params = params | {
        "click": AttributionKind.CLICK.value,
        "delivery": AttributionKind.DELIVERY.value,
        "marketing": MessageKind.MARKETING.value,
        "click_days": _default("attribution_click_days"),
        "delivery_hours": _default("attribution_delivery_hours"),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(ATTRIBUTE.format(orders=where[0]), params)
        attributed = cursor.rowcount
        cursor.execute(REFUNDED.format(refunds=where[1]), params)
    return attributed


def attribute_orders(*, tenant: Tenant, since: datetime, now: datetime | None = None) -> int:
    """Attribute the brand's orders recorded since `since` (see the module's rule) and bring
    the revenue of orders refunded since then up to date. Returns the orders attributed now."""
    params = {"tenant": tenant.pk, "since": since, "now": now or timezone.now()}
    return _attribute(ONE_BRAND, params)


def attribute_recent_orders(*, now: datetime) -> int:
    """The beat scan: every brand's orders of the last LOOKBACK, in one statement."""
    # WARNING: every tenant's orders, on purpose; each is only ever matched with texts of its
    # own tenant (every join is on tenant_id).
    return _attribute(EVERY_BRAND, {"since": now - LOOKBACK, "now": now})
