"""Writes of the automations app (campaigns now; flows later)."""
