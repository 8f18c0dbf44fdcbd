"""Campaigns (campaigns.py) and flows (flows.py)."""

from automations.models.campaigns import (
    TEXTED_GROUPS,
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    CampaignVariant,
    RecipientGroup,
    SendMode,
    WinnerMetric,
)
from automations.models.flows import (
    DryRunStatus,
    EntryLimit,
    Flow,
    FlowAudience,
    FlowDryRun,
    FlowRun,
    FlowRunLog,
    FlowStatus,
    RunStatus,
)

__all__ = [
    "TEXTED_GROUPS",
    "Campaign",
    "CampaignRecipient",
    "CampaignStatus",
    "CampaignVariant",
    "DryRunStatus",
    "EntryLimit",
    "Flow",
    "FlowAudience",
    "FlowDryRun",
    "FlowRun",
    "FlowRunLog",
    "FlowStatus",
    "RecipientGroup",
    "RunStatus",
    "SendMode",
    "WinnerMetric",
]
