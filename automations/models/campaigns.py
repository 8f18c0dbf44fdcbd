"""Campaigns: one message (or 2–5 A/B variants) to the people of some segments, minus others.

A campaign's audience is frozen at launch into CampaignRecipient rows (one per number, under a
unique constraint), each in a group: the A/B test, the remainder, the holdout (deliberately not
texted, for incremental-revenue reporting) or skipped (smart sending). Texts are then created
from those rows in chunks; the dispatcher decides when each may go (consent, quiet hours, caps).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from loyaltysms.models import Tenant, TenantOwnedModel
from messaging.models import Subscriber


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"  # audience frozen; texts being created (or A/B waiting)
    SENT = "sent", "Sent"  # every text created and handed to the dispatcher
    CANCELED = "canceled", "Canceled"


class SendMode(models.TextChoices):
    NOW = "now", "Now"
    AT = "at", "At a time"
    LOCAL = "local", "At a local time in each recipient's zone"


class WinnerMetric(models.TextChoices):
    CLICKS = "clicks", "Clicks"
    ORDERS = "orders", "Orders"
    REVENUE = "revenue", "Revenue"


class RecipientGroup(models.TextChoices):
    TEST = "test", "A/B test"
    REMAINDER = "remainder", "Remainder"  # without A/B: everyone texted
    HOLDOUT = "holdout", "Holdout"
    SKIPPED = "skipped", "Skipped"


# Groups that get a text (the others never do).
TEXTED_GROUPS = (RecipientGroup.TEST, RecipientGroup.REMAINDER)


class Campaign(TenantOwnedModel):
    name = models.CharField(max_length=100)
    # The template (tags, links), checked when saved. With A/B, each variant has its own.
    body = models.TextField(blank=True)
    segment_ids = ArrayField(models.BigIntegerField(), default=list)
    exclude_segment_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    status = models.CharField(
        max_length=10, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    send_mode = models.CharField(max_length=5, choices=SendMode.choices, default=SendMode.NOW)
    send_at = models.DateTimeField(null=True, blank=True)  # mode "at"
    local_date = models.DateField(null=True, blank=True)  # mode "local"
    local_time = models.TimeField(null=True, blank=True)
    # Texts not sent within this many hours of their moment expire (None: never).
    expires_hours = models.PositiveSmallIntegerField(null=True, blank=True)
    # Smart sending: skip numbers that got a marketing text in the last N hours (None: off).
    smart_sending_hours = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(24 * 14)]
    )
    holdout_percent = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(50)]
    )
    # A/B: set by the services when the campaign has 2–5 variants (CampaignVariant).
    ab_test = models.BooleanField(default=False)
    # The test share of the texted audience, the metric and
    # the wait after the test texts' moment before the winner goes to the remainder.
    test_percent = models.PositiveSmallIntegerField(
        default=20, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    winner_metric = models.CharField(
        max_length=8, choices=WinnerMetric.choices, default=WinnerMetric.CLICKS
    )
    wait_minutes = models.PositiveIntegerField(
        default=240, validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 60)]
    )
    winner = models.ForeignKey(
        "CampaignVariant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    winner_due_at = models.DateTimeField(null=True, blank=True)
    winner_chosen_at = models.DateTimeField(null=True, blank=True)
    winner_scores = models.JSONField(default=dict, blank=True)  # variant id → metric value
    # Progress (written by the launch, per chunk).
    launched_at = models.DateTimeField(null=True, blank=True)
    frozen_at = models.DateTimeField(null=True, blank=True)
    test_created_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True)
    audience_count = models.IntegerField(default=0)
    test_count = models.IntegerField(default=0)
    remainder_count = models.IntegerField(default=0)
    holdout_count = models.IntegerField(default=0)
    skipped_count = models.IntegerField(default=0)  # smart sending, or too long to send
    created_count = models.IntegerField(default=0)  # texts created
    # The fan-out's progress per phase: the last subscriber id whose text exists (recipients
    # are walked in subscriber order, one chunk per transaction with this row locked).
    test_cursor = models.BigIntegerField(default=0)
    remainder_cursor = models.BigIntegerField(default=0)
    canceled_count = models.IntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="campaign_tenant_created"),
            # The beat scan: campaigns waiting for their moment or their A/B winner.
            models.Index(
                fields=["status"],
                condition=Q(status__in=["scheduled", "sending"]),
                name="campaign_active",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CampaignVariant(TenantOwnedModel):
    """One A/B body; variants are ordered by id (ties in the metric go to the lowest)."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="variants", db_index=False
    )
    label = models.CharField(max_length=20)
    body = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "campaign", "label"], name="variant_label_unique"
            )
        ]

    def __str__(self) -> str:
        return self.label


class CampaignRecipient(TenantOwnedModel):
    """One number of a campaign's frozen audience.

    Its text, if it gets one, is the OutboundMessage with the dedupe key
    campaign:<campaign id>:<subscriber id> (unique per tenant). The fan-out doesn't write the
    text's id here: marking a million rows rewrote the whole table and took four times as
    long as creating the texts (bench/bench_campaign_fanout.py); it walks the rows in
    subscriber order instead, its progress kept on the campaign (`*_cursor`). `variant` is a
    test recipient's; the remainder gets the campaign's winner.

    No foreign-key constraints in the database (db_constraint=False; Django still cascades
    deletes of a tenant, campaign, subscriber or variant to these rows): the rows are written
    only by the freeze's INSERT … SELECT, from the subscribers it reads and the campaign it
    holds locked, and checking 4 constraints on a million rows took 12.7 s of a 23 s freeze.
    """

    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.CASCADE,
        related_name="recipients",
        db_index=False,
        db_constraint=False,
    )
    subscriber = models.ForeignKey(
        Subscriber,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    group = models.CharField(max_length=10, choices=RecipientGroup.choices)
    variant = models.ForeignKey(
        CampaignVariant,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_index=False,
        db_constraint=False,
    )
    skip_reason = models.CharField(max_length=40, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "campaign", "subscriber"], name="recipient_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.group} recipient of campaign {self.campaign_id}"
