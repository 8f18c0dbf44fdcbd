"""Flows: automated texts (and other steps) for each person a trigger brings in.

A flow is a trigger, entry rules, a graph of steps (JSON, checked by automations.flows.spec)
and exit conditions. Each person a trigger brings in gets a FlowRun: its current step and,
while it waits, `next_run_at` — the wait lives in PostgreSQL, never in a Celery ETA. A run is
unique per (flow, person, occurrence): the occurrence names what brought them in (an event
id, a birthday's year, a lot's expiry date, "once" for once-ever flows), so a trigger seen
twice — an event redelivered, a scan run twice or killed midway — enters nobody twice, and a
text's dedupe key (flow run + step) makes each step's text exist at most once.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from loyaltysms.models import TenantOwnedModel


class FlowStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    LIVE = "live", "Live"
    PAUSED = "paused", "Paused"  # nobody enters; runs under way wait where they are


class EntryLimit(models.TextChoices):
    ONCE = "once", "Once ever"
    YEARLY = "yearly", "Once a year"
    EVERY_TIME = "every", "Every time"


class FlowAudience(models.TextChoices):
    ANYONE = "anyone", "Anyone"
    MEMBERS = "members", "Loyalty members"
    NON_MEMBERS = "non_members", "Subscribers who aren't members"


class Flow(TenantOwnedModel):
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    # The prebuilt flow it was installed from ("" for one built from scratch).
    template = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=8, choices=FlowStatus.choices, default=FlowStatus.DRAFT)
    # {"type": <trigger>, …its settings}; the type is copied to `trigger_type` for lookups.
    trigger = models.JSONField()
    trigger_type = models.CharField(max_length=32)
    entry_limit = models.CharField(
        max_length=6, choices=EntryLimit.choices, default=EntryLimit.EVERY_TIME
    )
    audience = models.CharField(
        max_length=12, choices=FlowAudience.choices, default=FlowAudience.ANYONE
    )
    segment = models.ForeignKey(
        "segments.Segment", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # {"start": <step id>, "steps": {<id>: {"type": …, …}}}
    steps = models.JSONField()
    # Event kinds that end a run under way (e.g. an order ends a win-back).
    exit_on = models.JSONField(default=list, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "status", "trigger_type"], name="flow_tenant_trigger"),
        ]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    ACTIVE = "active", "Active"  # at `step`, due at `next_run_at`
    DONE = "done", "Done"  # reached the end
    EXITED = "exited", "Exited"  # an exit condition ended it
    STOPPED = "stopped", "Stopped"  # stopped by the brand (flow deleted, or run canceled)


class FlowRun(TenantOwnedModel):
    """One person's way through a flow for one occurrence of its trigger."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="runs", db_index=False)
    member = models.ForeignKey(
        "programs.Member", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        db_index=False,
    )  # fmt: skip
    subscriber = models.ForeignKey(
        "messaging.Subscriber", null=True, blank=True, on_delete=models.CASCADE,
        related_name="+", db_index=False,
    )  # fmt: skip
    # Who the run is for, as the trigger names them: "m<member id>" or "s<subscriber id>".
    person = models.CharField(max_length=24)
    occurrence = models.CharField(max_length=40)
    status = models.CharField(max_length=8, choices=RunStatus.choices, default=RunStatus.ACTIVE)
    step = models.CharField(max_length=24)
    next_run_at = models.DateTimeField(null=True, blank=True)
    entered_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(max_length=100, blank=True)
    # What later steps look back at: the last text's dedupe key, the orders count at entry.
    context = models.JSONField(default=dict, blank=True)
    steps_taken = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "flow", "person", "occurrence"], name="flowrun_once"
            ),
        ]
        indexes = [
            # The engine's claim across brands: due runs, soonest first.
            models.Index(
                fields=["next_run_at"],
                condition=Q(status="active"),
                name="flowrun_due",
            ),
            # One brand's due runs (the engine's claim), soonest first.
            models.Index(
                fields=["tenant", "next_run_at"],
                condition=Q(status="active"),
                name="flowrun_tenant_due",
            ),
            # Exits (an event for a member ends their runs) and a member's run history.
            models.Index(fields=["tenant", "member", "-id"], name="flowrun_tenant_member"),
            models.Index(fields=["tenant", "flow", "-id"], name="flowrun_tenant_flow"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of flow {self.flow_id}"


class FlowRunLog(TenantOwnedModel):
    """What a run did at each step, for the per-member run history and the flow's figures."""

    run = models.ForeignKey(FlowRun, on_delete=models.CASCADE, related_name="log", db_index=False)
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="+", db_index=False)
    step = models.CharField(max_length=24)
    # entered, sent, not_texted, waited, branched, awarded, rewarded, tagged, untagged,
    # unsubscribed, exited, ended, skipped
    action = models.CharField(max_length=16)
    detail = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "run", "id"], name="flowrunlog_tenant_run"),
            models.Index(fields=["tenant", "flow", "step", "action"], name="flowrunlog_step"),
        ]

    def __str__(self) -> str:
        return f"{self.action} at {self.step}"


class DryRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class FlowDryRun(TenantOwnedModel):
    """A dry run asked for in the dashboard, done by a worker while the page shows progress;
    its report is kept as JSON (automations.services.flow_dryrun)."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="dry_runs")
    days = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=8, choices=DryRunStatus.choices, default=DryRunStatus.QUEUED
    )
    progress = models.FloatField(default=0)
    report = models.JSONField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    # The flow as it was when asked (its version), so an edit since shows as such.
    flow_version = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"dry run {self.pk} of flow {self.flow_id}"
