"""Reads of campaigns for the dashboard: single campaigns, lists, progress and counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection
from django.http import Http404

from automations.metrics import dedupe_prefix
from automations.models import Campaign, CampaignVariant, RecipientGroup
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import MessageStatus


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
