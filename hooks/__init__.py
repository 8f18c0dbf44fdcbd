"""Outgoing webhooks: loyalty and SMS events, signed, delivered to the brand's own systems
in order per member, retried with backoff, logged and replayable."""
