"""Reading the outbox (LoyaltyEvent) with raw SQL, as its consumers do: the flow engine
(automations.services.flow_triggers) and the outgoing webhooks (hooks.services.fan_out)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    kind: str
    member_id: int | None
    payload: dict
    created_at: datetime

    @classmethod
    def from_rows(cls, rows) -> list:
        """Events from rows of (id, kind, member_id, payload, created_at), as each consumer
        selects them; Django leaves jsonb from a raw cursor as text."""
        return [
            cls(id, kind, member, json.loads(payload), at) for id, kind, member, payload, at in rows
        ]
