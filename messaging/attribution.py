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
orders; programs knows nothing of this. One INSERT … SELECT per brand and scan, DISTINCT ON the
order, ON CONFLICT DO NOTHING: a scan run twice, or two at once, attributes each order once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from loyaltysms.models import Tenant
from messaging.models import AttributionKind, MessageKind
from messaging.services.setup import messaging_settings_get

# A scan looks this far back (by when we learned of each order): a delivery receipt that comes
# in after the order was recorded, or a storefront that reports an order late, still counts.
LOOKBACK = timedelta(hours=2)

# Candidates per order: every click in the click window (rank 0) and every delivery in the
# delivery window (rank 1); DISTINCT ON keeps the best rank, then the latest moment.
ATTRIBUTE = """
INSERT INTO messaging_attribution
    (tenant_id, order_id, message_id, kind, source, source_ref, revenue, placed_at,
     touched_at, attributed_at)
SELECT DISTINCT ON (c.order_pk)
       c.tenant_id, c.order_pk, m.id, c.kind, m.source, m.source_ref, c.revenue, c.placed_at,
       c.touched_at, %(now)s
FROM (
    SELECT o.tenant_id, o.id AS order_pk, o.subtotal - o.refunded_amount AS revenue,
           o.placed_at, m.id AS message_pk, %(click)s AS kind, 0 AS rank,
           l.first_clicked_at AS touched_at
    FROM programs_order o
    JOIN messaging_subscriber s ON s.tenant_id = o.tenant_id AND s.member_id = o.member_id
    JOIN messaging_shortlink l ON l.tenant_id = s.tenant_id AND l.subscriber_id = s.id
    JOIN messaging_outboundmessage m
      ON m.tenant_id = l.tenant_id AND m.dedupe_key = l.message_dedupe_key
    WHERE o.tenant_id = %(tenant)s AND o.created_at >= %(since)s
      AND l.first_clicked_at <= o.placed_at
      AND l.first_clicked_at > o.placed_at - %(click_window)s
      AND m.kind = %(marketing)s
    UNION ALL
    SELECT o.tenant_id, o.id, o.subtotal - o.refunded_amount, o.placed_at, m.id,
           %(delivery)s, 1, m.delivered_at
    FROM programs_order o
    JOIN messaging_subscriber s ON s.tenant_id = o.tenant_id AND s.member_id = o.member_id
    JOIN messaging_outboundmessage m ON m.tenant_id = s.tenant_id AND m.subscriber_id = s.id
    WHERE o.tenant_id = %(tenant)s AND o.created_at >= %(since)s
      AND m.delivered_at <= o.placed_at
      AND m.delivered_at > o.placed_at - %(delivery_window)s
      AND m.kind = %(marketing)s
) c
JOIN messaging_outboundmessage m ON m.id = c.message_pk
ORDER BY c.order_pk, c.rank, c.touched_at DESC, c.message_pk DESC
ON CONFLICT (order_id) DO NOTHING
"""

# Refunds recorded since the scan's start take their share off the attributed revenue.
REFUNDED = """
UPDATE messaging_attribution a SET revenue = o.subtotal - o.refunded_amount
FROM programs_order o
WHERE a.tenant_id = %(tenant)s AND o.tenant_id = a.tenant_id AND o.id = a.order_id
  AND a.revenue <> o.subtotal - o.refunded_amount
  AND o.id IN (SELECT r.order_id FROM programs_refund r
               WHERE r.tenant_id = %(tenant)s AND r.created_at >= %(since)s)
"""


def windows(tenant: Tenant) -> tuple[timedelta, timedelta]:
    """The brand's (click window, delivery window)."""
    settings = messaging_settings_get(tenant)
    return (
        timedelta(days=settings.attribution_click_days),
        timedelta(hours=settings.attribution_delivery_hours),
    )


@transaction.atomic
def attribute_orders(*, tenant: Tenant, since: datetime, now: datetime | None = None) -> int:
    """Attribute the brand's orders recorded since `since` (see the module's rule) and bring
    the revenue of orders refunded since then up to date. Returns the orders attributed now."""
    click_window, delivery_window = windows(tenant)
    params = {
        "tenant": tenant.pk,
        "since": since,
        "now": now or timezone.now(),
        "click": AttributionKind.CLICK.value,
        "delivery": AttributionKind.DELIVERY.value,
        "click_window": click_window,
        "delivery_window": delivery_window,
        "marketing": MessageKind.MARKETING.value,
    }
    with connection.cursor() as cursor:
        cursor.execute(ATTRIBUTE, params)
        attributed = cursor.rowcount
        cursor.execute(REFUNDED, params)
    return attributed


def attribute_recent_orders(*, now: datetime) -> int:
    """The beat scan: every brand's orders of the last LOOKBACK."""
    # WARNING: every tenant, on purpose; each brand's orders are attributed in its own query.
    attributed = 0
    for tenant in Tenant.objects.order_by("id"):
        attributed += attribute_orders(tenant=tenant, since=now - LOOKBACK, now=now)
    return attributed
