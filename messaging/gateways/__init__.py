"""Carrier gateways behind one interface (base.Gateway); `gateway_for(sender)` picks one."""

from __future__ import annotations

from messaging.gateways.base import Gateway, GatewayError, OutcomeUnknown, Outgoing, Sent
from messaging.models import Sender, SenderKind

__all__ = [
    "Gateway",
    "GatewayError",
    "OutcomeUnknown",
    "Outgoing",
    "Sent",
    "concurrency_for",
    "gateway_for",
]


def gateway_for(sender: Sender) -> Gateway:
    if sender.kind == SenderKind.TWILIO:
        from messaging.gateways.twilio import TwilioGateway

        return TwilioGateway.for_sender(sender)
    from messaging.gateways.sandbox import SandboxGateway

    return SandboxGateway(sender)


def concurrency_for(sender: Sender) -> int | None:
    """Requests the sender's carrier takes at once (None: no limit)."""
    if sender.kind == SenderKind.TWILIO:
        from messaging.gateways.twilio import CONCURRENT_REQUESTS

        return CONCURRENT_REQUESTS
    return None
