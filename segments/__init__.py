"""Segments: a rule tree over loyalty and SMS data, compiled to one SQL query."""
