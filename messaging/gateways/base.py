"""What every carrier gateway does, and the errors it speaks (house style: carriers are
transports; callers never parse carrier codes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Outgoing:
    """One text as the carrier needs it."""

    to: str
    body: str
    status_callback: str
    expires_at: datetime | None
    now: datetime
    message_id: int = 0  # ours, for gateways that report back (the sandbox)
    tenant_id: int = 0
    smart_encoded: bool = False


@dataclass(frozen=True)
class Sent:
    carrier_sid: str
    status: str  # the carrier's first status: "queued", "accepted" or "sent"


class GatewayError(Exception):
    """The carrier refused the text.

    permanent: sending it again can never work (invalid number, opted out at the carrier).
    opted_out: the number opted out at the carrier (21610): unsubscribe it.
    retry: a temporary condition (rate limited, carrier error): try again later.
    """

    def __init__(
        self, message: str, *, code: str = "", permanent: bool = False, opted_out: bool = False
    ):
        super().__init__(message)
        self.code = code
        self.permanent = permanent
        self.opted_out = opted_out

    @property
    def retry(self) -> bool:
        return not self.permanent


class OutcomeUnknown(Exception):
    """The request reached the carrier but no answer came back: it may or may not have been
    sent. Never re-send blindly; the status callback or a fetch settles it."""


class Gateway(Protocol):
    async def send_async(self, message: Outgoing) -> Sent:
        """Hand one text to the carrier, on the process's carrier loop (messaging.aio);
        touches no database. Once it returns, the carrier has the text and reports on it
        (receipts) whatever becomes of the caller."""
