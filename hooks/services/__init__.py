"""Writes of the hooks app: endpoints (endpoints.py), the outbox fanned out to them
(fan_out.py), deliveries sent and settled (delivery.py)."""
