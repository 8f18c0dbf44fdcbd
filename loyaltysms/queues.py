"""The task queues, one per concern, so a burst in one can't starve another."""

from enum import StrEnum


class Queue(StrEnum):
    DEFAULT = "default"
    EVENTS = "events"  # loyalty outbox → automations
    DISPATCH = "dispatch"  # outbound SMS to the carrier
    WEBHOOKS = "webhooks"  # inbound texts and delivery receipts
    SCANS = "scans"  # daily/hourly set-based scans over all tenants
    HOOKS = "hooks"  # outgoing webhooks: other people's servers, slow or down at times
