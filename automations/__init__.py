"""Campaigns (with A/B variants), flows and their runs, triggers, daily scans and dry runs:
the only app that decides when to text someone."""
