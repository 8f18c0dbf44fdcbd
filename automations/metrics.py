"""How an A/B test's winner is measured: a registry of metrics, each scoring every variant of a
campaign's test group up to a moment (higher is better).

`clicks` is here: the share of a variant's test recipients who clicked a tracked link of their
text (unique clickers; link-preview fetches are never counted, messaging/links.py). `orders`
and `revenue` come from attributions and are registered by automations/stats.py (loaded when
the app is ready).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import connection

from automations.models import Campaign, RecipientGroup, WinnerMetric

# campaign, moment → variant id → score (variants nobody in the test group got may be absent)
WinnerScorer = Callable[[Campaign, datetime], dict[int, float]]
WINNER_METRICS: dict[str, WinnerScorer] = {}


def register_winner_metric(name: str, scorer: WinnerScorer) -> None:
    WINNER_METRICS[name] = scorer


# Per variant: test recipients (each got a text: one too long to send leaves the group), and
# those with a link of their campaign text first clicked by
# the moment. The links are found by the text's dedupe key (campaign:<id>:<subscriber id>),
# through ShortLink's (tenant, message_dedupe_key) index.
CLICKERS = """
SELECT r.variant_id, count(*),
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM messaging_shortlink l
           WHERE l.tenant_id = r.tenant_id
             AND l.message_dedupe_key = %s || r.subscriber_id
             AND l.first_clicked_at <= %s))
FROM automations_campaignrecipient r
WHERE r.tenant_id = %s AND r.campaign_id = %s AND r."group" = %s
GROUP BY r.variant_id
"""


def dedupe_prefix(campaign: Campaign) -> str:
    return f"campaign:{campaign.pk}:"


def click_rate(campaign: Campaign, now: datetime) -> dict[int, float]:
    with connection.cursor() as cursor:
        cursor.execute(
            CLICKERS,
            [dedupe_prefix(campaign), now, campaign.tenant_id, campaign.pk, RecipientGroup.TEST],
        )
        return {
            variant_id: clicked / texted
            for variant_id, texted, clicked in cursor.fetchall()
            if variant_id is not None and texted
        }


register_winner_metric(WinnerMetric.CLICKS, click_rate)


def winner_of(scores: dict[int, float], variant_ids: list[int]) -> int:
    """The best score; a tie (or no data at all) goes to the lowest variant id."""
    return min(variant_ids, key=lambda v: (-scores.get(v, 0.0), v))
