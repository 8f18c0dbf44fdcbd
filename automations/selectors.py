"""Reads of campaigns: single campaigns, lists, progress and counters, and the audience (its
SQL for the launch, its count and sample texts for the composer's preview)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.http import Http404

from automations.metrics import dedupe_prefix
from automations.models import Campaign, CampaignVariant, RecipientGroup
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import MessageKind, MessageStatus
from messaging.services.bulk import BulkComposer, recipient_values
from messaging.services.outbound import CODE_LENGTH, short_url
from messaging.services.setup import brand_name, messaging_settings_get
from segments.models import Segment
from segments.selectors import segment_cursor, segment_subscriber_ids_sql


def get_campaign(tenant: Tenant, campaign_id: int) -> Campaign:
    """The same 404 for "missing" and "another brand's"."""
    with tenant_scope(tenant):
        campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None:
        raise Http404("No such campaign.")
    return campaign


def campaign_list(tenant: Tenant, *, before_id: int | None = None, limit: int = 50) -> list:
    """Newest first, a page at a time (keyset on id)."""
    with tenant_scope(tenant):
        campaigns = Campaign.objects.order_by("-id")
        if before_id is not None:
            campaigns = campaigns.filter(id__lt=before_id)
        return list(campaigns[:limit])


def campaign_variants(campaign: Campaign) -> list[CampaignVariant]:
    with tenant_scope(campaign.tenant):
        return list(CampaignVariant.objects.filter(campaign=campaign).order_by("id"))


# Texts of a campaign by status, and recipients by group: through the recipients (their
# campaign index), then each text by its dedupe key.
STATUS_COUNTS = """
SELECT o.status, count(*)
FROM automations_campaignrecipient r JOIN messaging_outboundmessage o
  ON o.tenant_id = r.tenant_id AND o.dedupe_key = %s || r.subscriber_id
WHERE r.tenant_id = %s AND r.campaign_id = %s AND r."group" IN ('test', 'remainder')
GROUP BY o.status
"""
GROUP_COUNTS = """
SELECT "group", count(*) FROM automations_campaignrecipient
WHERE tenant_id = %s AND campaign_id = %s GROUP BY "group"
"""
# Texts still on their way: the progress bar counts the others as done.
IN_PROGRESS = (
    MessageStatus.QUEUED,
    MessageStatus.DEFERRED,
    MessageStatus.SENDING,
)


@dataclass(frozen=True)
class CampaignProgress:
    """audience = texts created + holdout + skipped + (texted groups not created yet), and
    texts created = the sum of `statuses` (sent + delivered + … + suppressed + canceled +
    expired + still queued)."""

    status: str
    audience: int
    groups: dict[str, int]  # recipients per group
    created: int  # texts created
    pending: int  # recipients of a texted group whose text isn't created yet
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def holdout(self) -> int:
        return self.groups.get(RecipientGroup.HOLDOUT, 0)

    @property
    def skipped(self) -> int:
        return self.groups.get(RecipientGroup.SKIPPED, 0)

    @property
    def settled(self) -> int:
        """Texts past the dispatcher (sent, delivered, failed, suppressed, canceled, …)."""
        return self.created - sum(self.statuses.get(s, 0) for s in IN_PROGRESS)

    @property
    def percent_done(self) -> float:
        texted = self.created + self.pending
        return 100.0 if texted == 0 else 100.0 * self.settled / texted


def campaign_progress(campaign: Campaign) -> CampaignProgress:
    """The counters of the progress bar and the campaign's stats, from the rows themselves
    (two grouped queries), not from counters that could drift. For a campaign of a million
    that is a million index lookups (a few seconds): a page polling it should cache it."""
    tenant_id = campaign.tenant_id
    with connection.cursor() as cursor:
        cursor.execute(GROUP_COUNTS, [tenant_id, campaign.pk])
        groups = dict(cursor.fetchall())
        cursor.execute(STATUS_COUNTS, [dedupe_prefix(campaign), tenant_id, campaign.pk])
        statuses = dict(cursor.fetchall())
    created = sum(statuses.values())
    pending = sum(groups.get(g, 0) for g in (RecipientGroup.TEST, RecipientGroup.REMAINDER))
    campaign.refresh_from_db(fields=["status"])
    return CampaignProgress(
        status=campaign.status,
        audience=sum(groups.values()),
        groups=groups,
        created=created,
        pending=pending - created,
        statuses=statuses,
    )


# --- the audience -----------------------------------------------------------------------------


class CampaignUnavailable(Exception):
    """A segment of the campaign was deleted before launch."""


def audience_sql(
    tenant: Tenant, segment_ids: list[int], exclude_segment_ids: list[int], now: datetime
) -> tuple[str, list]:
    """SQL of `SELECT id` of a campaign's audience: (the segments' numbers, subscribed now,
    each once) EXCEPT (the exclusions' numbers, subscribed or not)."""
    ids = [*segment_ids, *exclude_segment_ids]
    with tenant_scope(tenant):
        rules = dict(Segment.objects.filter(pk__in=ids).values_list("id", "rules"))
    missing = set(ids) - set(rules)
    if missing:
        raise CampaignUnavailable(f"segment {min(missing)} no longer exists")
    parts, params = [], []
    for segment_id in segment_ids:
        sql, p = segment_subscriber_ids_sql(tenant, rules[segment_id], now=now)
        parts.append(f"({sql})")
        params += p
    sql = " UNION ".join(parts)
    if exclude_segment_ids:
        excluded = []
        for segment_id in exclude_segment_ids:
            s, p = segment_subscriber_ids_sql(
                tenant, rules[segment_id], now=now, subscribed_only=False
            )
            excluded.append(f"({s})")
            params += p
        sql = f"({sql}) EXCEPT ({' UNION '.join(excluded)})"
    return sql, params


AUDIENCE_COUNT = "SELECT count(*) FROM ({audience}) a"
# The newest numbers of the audience, with what their texts' tags need (as a launch reads).
AUDIENCE_SAMPLE = """
SELECT s.id, s.phone, m.id, m.first_name, m.last_name, m.points_balance, t.name
FROM ({audience}) a
JOIN messaging_subscriber s ON s.id = a.id AND s.tenant_id = %s
LEFT JOIN programs_member m ON m.id = s.member_id AND m.tenant_id = s.tenant_id
LEFT JOIN programs_tier t ON t.id = m.tier_id
ORDER BY s.id DESC
LIMIT %s
"""


@dataclass(frozen=True)
class SampleText:
    label: str  # the A/B version's ("" without A/B)
    text: str
    encoding: str
    segments: int
    characters: int
    cost: Decimal


@dataclass(frozen=True)
class SampleRecipient:
    phone: str
    name: str
    texts: list[SampleText]  # one per body (variant), in the order given


@dataclass(frozen=True)
class AudiencePreview:
    count: int
    samples: list[SampleRecipient]
    price_per_segment: Decimal
    # The campaign's cost if everyone's text had as many segments as the samples' average.
    estimated_segments: int
    estimated_cost: Decimal


def audience_preview(
    tenant: Tenant,
    *,
    segment_ids: list[int],
    exclude_segment_ids: list[int],
    versions: list[tuple[str, str]],
    now: datetime,
    sample: int = 3,
) -> AudiencePreview:
    """How many numbers a campaign would text now, and the texts `sample` of them would get
    for each of the (label, body) `versions` (each body checked first: BodyInvalid), as the
    launch renders them — tags, a tracked link in its short form, the footer, smart
    encoding — with each text's encoding, segments and cost. Two queries: the count and the
    sample."""
    settings = messaging_settings_get(tenant)
    brand = brand_name(tenant, settings)
    composers = [
        (label, BulkComposer(body, kind=MessageKind.MARKETING, settings=settings, brand=brand))
        for label, body in versions
    ]
    audience, params = audience_sql(tenant, segment_ids, exclude_segment_ids, now)
    with segment_cursor() as cursor:
        cursor.execute(AUDIENCE_COUNT.format(audience=audience), params)
        count = cursor.fetchone()[0]
        rows = []
        if count and composers:
            cursor.execute(AUDIENCE_SAMPLE.format(audience=audience), [*params, tenant.pk, sample])
            rows = cursor.fetchall()
    tags = set().union(*(c.tags for _, c in composers))
    values = recipient_values(tenant, [(r[0], *r[2:]) for r in rows], tags=tags, now=now)
    link = short_url("x" * CODE_LENGTH)  # every tracked link is this long
    price = settings.price_per_segment
    samples, segments_seen = [], []
    for subscriber_id, phone, member_id, first, last, *_ in rows:
        texts = []
        for label, composer in composers:
            text, info = composer.compose(values[subscriber_id], lambda url: link)
            texts.append(
                SampleText(
                    label=label,
                    text=text,
                    encoding=info.encoding,
                    segments=info.segments,
                    characters=info.characters,
                    cost=price * info.segments,
                )
            )
            segments_seen.append(info.segments)
        name = f"{first} {last}".strip() if member_id else ""
        samples.append(SampleRecipient(phone=phone, name=name, texts=texts))
    average = sum(segments_seen) / len(segments_seen) if segments_seen else 0
    estimated = round(count * average)
    return AudiencePreview(
        count=count,
        samples=samples,
        price_per_segment=price,
        estimated_segments=estimated,
        estimated_cost=(price * estimated).quantize(Decimal("0.01")),
    )
