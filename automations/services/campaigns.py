"""Campaigns: composing, scheduling and canceling (launching is in services/launch.py).

Rules enforced here:
- Every body (the campaign's, each variant's) is a template the channel can send: unknown
  tags are errors (messaging's rendering helpers), `{reward_code}` has no meaning for a
  campaign, and nothing is empty.
- The audience names at least one of the brand's own segments; exclusions too are the brand's.
- A/B: 2 to 5 variants with distinct labels, a test share below 100 %, a winner metric that
  is available (automations.metrics).
- A send mode with what it needs (a time; a local date and time).
- Only a draft changes; canceling stops every text not yet handed to the dispatcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

from django.db import transaction
from django.http import Http404

from automations.metrics import WINNER_METRICS, dedupe_prefix
from automations.models import (
    Campaign,
    CampaignStatus,
    CampaignVariant,
    SendMode,
    WinnerMetric,
)
from automations.tasks import campaign_launch
from loyaltysms.models import Tenant, User
from loyaltysms.problems import ProblemError
from loyaltysms.services import audit
from loyaltysms.tenancy.context import tenant_scope
from loyaltysms.tenancy.tasks import enqueue_on_commit
from messaging.models import DUE_STATUSES, MessageStatus
from messaging.services.outbound import BodyInvalid, check_template
from segments.selectors import get_segment

MAX_VARIANTS = 5


class CampaignInvalid(ProblemError):
    code = "campaign-invalid"


class CampaignNotEditable(ProblemError):
    status_code = 409
    code = "campaign-not-editable"


@dataclass(frozen=True)
class VariantSpec:
    label: str
    body: str


def _check_body(body: str, field: str, errors: dict) -> None:
    try:
        check_template(body)
    except BodyInvalid as exc:
        errors[field] = [str(exc)]
        return
    if "{reward_code" in body:
        errors[field] = ["{reward_code} is for a text about one reward; a campaign has none"]


def _check_segments(tenant: Tenant, ids: list[int], field: str, errors: dict) -> list[int]:
    cleaned = []
    for segment_id in ids:
        try:
            cleaned.append(get_segment(tenant, int(segment_id)).pk)
        except (Http404, TypeError, ValueError):
            errors[field] = [f"no such segment: {segment_id}"]
    return sorted(set(cleaned))


def _validate(tenant: Tenant, fields: dict, variants: list[VariantSpec]) -> dict:
    errors: dict = {}
    name = (fields.get("name") or "").strip()
    if not name or len(name) > 100:
        errors["name"] = ["1 to 100 characters"]
    fields["name"] = name
    fields["segment_ids"] = _check_segments(
        tenant, fields.get("segment_ids") or [], "segment_ids", errors
    )
    if not fields["segment_ids"] and "segment_ids" not in errors:
        errors["segment_ids"] = ["choose at least one segment"]
    fields["exclude_segment_ids"] = _check_segments(
        tenant, fields.get("exclude_segment_ids") or [], "exclude_segment_ids", errors
    )
    if variants:
        if not 2 <= len(variants) <= MAX_VARIANTS:
            errors["variants"] = [f"an A/B test has 2 to {MAX_VARIANTS} variants"]
        labels = [v.label.strip() for v in variants]
        if len(set(labels)) != len(labels) or not all(labels):
            errors["variants"] = ["each variant needs a label of its own"]
        for n, variant in enumerate(variants):
            _check_body(variant.body, f"variants.{n}.body", errors)
        if not 1 <= fields.get("test_percent", 20) <= 99:
            errors["test_percent"] = ["the test share is 1 to 99 % of the texted audience"]
        metric = fields.get("winner_metric", WinnerMetric.CLICKS)
        if metric not in WINNER_METRICS:
            errors["winner_metric"] = [
                f"{metric} can't pick a winner yet; available: {', '.join(sorted(WINNER_METRICS))}"
            ]
        if not 1 <= fields.get("wait_minutes", 240) <= 7 * 24 * 60:
            errors["wait_minutes"] = ["1 minute to 7 days"]
    else:
        _check_body(fields.get("body") or "", "body", errors)
    mode = fields.get("send_mode", SendMode.NOW)
    if mode not in SendMode.values:
        errors["send_mode"] = [f"one of {', '.join(SendMode.values)}"]
    if mode == SendMode.AT and not isinstance(fields.get("send_at"), datetime):
        errors["send_at"] = ["a time to send at"]
    if mode == SendMode.LOCAL and not (
        isinstance(fields.get("local_date"), date) and isinstance(fields.get("local_time"), time)
    ):
        errors["local_time"] = ["a date and a local time of day"]
    if not 0 <= fields.get("holdout_percent", 0) <= 50:
        errors["holdout_percent"] = ["0 to 50 %"]
    hours = fields.get("smart_sending_hours")
    if hours is not None and not 1 <= hours <= 24 * 14:
        errors["smart_sending_hours"] = ["1 hour to 14 days, or off"]
    if errors:
        raise CampaignInvalid("The campaign can't be saved as it is.", errors=errors)
    return fields


FIELDS = (
    "name",
    "body",
    "segment_ids",
    "exclude_segment_ids",
    "send_mode",
    "send_at",
    "local_date",
    "local_time",
    "expires_hours",
    "smart_sending_hours",
    "holdout_percent",
    "test_percent",
    "winner_metric",
    "wait_minutes",
)


@transaction.atomic
def campaign_create(
    *,
    tenant: Tenant,
    now: datetime,
    variants: list[VariantSpec] | None = None,
    actor: User | None = None,
    **fields,
) -> Campaign:
    """A draft campaign (checked as the module says); with `variants`, an A/B test whose
    bodies are the variants' (the campaign's own body is then unused)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown campaign fields: {', '.join(sorted(unknown))}")
    variants = variants or []
    fields = _validate(tenant, dict(fields), variants)
    with tenant_scope(tenant):
        campaign = Campaign.objects.create(
            **fields,
            ab_test=bool(variants),
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
        for variant in variants:
            CampaignVariant.objects.create(
                campaign=campaign, label=variant.label.strip(), body=variant.body, created_at=now
            )
    audit(tenant=tenant, actor=actor, action="campaign.created", target=campaign.name)
    return campaign


@transaction.atomic
def campaign_update(
    *,
    campaign: Campaign,
    now: datetime,
    variants: list[VariantSpec] | None = None,
    actor: User | None = None,
    **changes,
) -> Campaign:
    """Change a draft (the same checks as creating it). `variants`, when given, replaces the
    A/B variants ([]: no longer an A/B test); otherwise they stay as they are."""
    tenant = campaign.tenant
    with tenant_scope(tenant):
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status != CampaignStatus.DRAFT:
            raise CampaignNotEditable(f"A {locked.status} campaign can't be changed.")
        current_variants = [VariantSpec(v.label, v.body) for v in locked.variants.order_by("id")]
        current = {name: getattr(locked, name) for name in FIELDS}
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise TypeError(f"unknown campaign fields: {', '.join(sorted(unknown))}")
        new_variants = current_variants if variants is None else variants
        fields = _validate(tenant, {**current, **changes}, new_variants)
        for name in changes:
            setattr(locked, name, fields[name])
        locked.updated_at = now
        update = [*changes, "updated_at"]
        if variants is not None and variants != current_variants:
            CampaignVariant.objects.filter(campaign=locked).delete()
            for variant in variants:
                CampaignVariant.objects.create(
                    campaign=locked, label=variant.label.strip(), body=variant.body, created_at=now
                )
            locked.ab_test = bool(variants)
            update.append("ab_test")
        locked.save(update_fields=update)
    audit(tenant=tenant, actor=actor, action="campaign.updated", target=locked.name)
    return locked


@transaction.atomic
def campaign_schedule(*, campaign: Campaign, now: datetime, actor: User | None = None) -> Campaign:
    """Draft → scheduled. The beat scan (automations.tasks.campaigns_advance) launches it at
    its moment; a campaign to send now is launched as soon as this commits."""
    tenant = campaign.tenant
    with tenant_scope(tenant):
        updated = Campaign.objects.filter(pk=campaign.pk, status=CampaignStatus.DRAFT).update(
            status=CampaignStatus.SCHEDULED, updated_at=now
        )
        if updated != 1:
            raise CampaignNotEditable("Only a draft can be scheduled.")
        campaign.refresh_from_db()
    if campaign.send_mode == SendMode.NOW:
        enqueue_on_commit(campaign_launch, tenant.pk, campaign.pk)
    audit(tenant=tenant, actor=actor, action="campaign.scheduled", target=campaign.name)
    return campaign


# The campaign's texts, found from its recipients by their dedupe keys: those waiting are
# canceled; one being sent right now goes, but expires now, so a failed send is not tried
# again (the dispatcher expires it at its next claim). A text whose send is under way is
# locked by its batch: this waits for the outcome and then looks again (a send that failed
# and was put back to wait is canceled then).
CANCEL_TEXTS = """
UPDATE messaging_outboundmessage o
SET status = CASE WHEN o.status = 'sending' THEN o.status ELSE %(canceled)s END,
    status_reason = CASE WHEN o.status = 'sending' THEN o.status_reason
                         ELSE 'campaign canceled' END,
    finished_at = CASE WHEN o.status = 'sending' THEN o.finished_at ELSE %(now)s END,
    expires_at = CASE WHEN o.status = 'sending' THEN %(now)s ELSE o.expires_at END,
    updated_at = %(now)s
FROM automations_campaignrecipient r
WHERE r.tenant_id = %(tenant)s AND r.campaign_id = %(campaign)s
  AND r."group" IN ('test', 'remainder')
  AND o.tenant_id = r.tenant_id AND o.dedupe_key = %(prefix)s || r.subscriber_id
  AND o.status = ANY(%(statuses)s)
RETURNING o.status = %(canceled)s
"""


@transaction.atomic
def campaign_cancel(*, campaign: Campaign, now: datetime, actor: User | None = None) -> int:
    """Stop a campaign: nothing more is created, and its texts still waiting for the dispatcher
    (queued, deferred) become canceled in one UPDATE. Texts already claimed by the dispatcher
    (its claim holds their rows) are left to it: the UPDATE waits for the claim, then sees
    them `sending` and leaves them. Returns how many texts were canceled."""
    from django.db import connection

    tenant = campaign.tenant
    with tenant_scope(tenant):
        # The launch takes this row's lock for each chunk: once we hold it, no chunk is being
        # written, and every later chunk sees the campaign canceled.
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status == CampaignStatus.CANCELED:
            return 0
        with connection.cursor() as cursor:
            cursor.execute(
                CANCEL_TEXTS,
                {
                    "canceled": MessageStatus.CANCELED.value,
                    "now": now,
                    "tenant": tenant.pk,
                    "campaign": locked.pk,
                    "prefix": dedupe_prefix(locked),
                    "statuses": [*(str(s) for s in DUE_STATUSES), MessageStatus.SENDING.value],
                },
            )
            canceled = sum(1 for (was_canceled,) in cursor.fetchall() if was_canceled)
        locked.status = CampaignStatus.CANCELED
        locked.canceled_at = now
        locked.canceled_count += canceled
        locked.updated_at = now
        locked.save(update_fields=["status", "canceled_at", "canceled_count", "updated_at"])
    audit(
        tenant=tenant,
        actor=actor,
        action="campaign.canceled",
        target=locked.name,
        texts_canceled=canceled,
    )
    campaign.refresh_from_db()
    return canceled
