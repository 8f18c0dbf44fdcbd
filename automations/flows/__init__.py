"""Flows: what a flow may say (spec), the prebuilt ones (prebuilt)."""
