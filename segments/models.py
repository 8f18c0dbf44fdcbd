"""Saved segments: a name and a rule tree (segments/rules.py), compiled to SQL on every use."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from loyaltysms.models import TenantOwnedModel


class Segment(TenantOwnedModel):
    name = models.CharField(max_length=100)
    # The tree as the marketer gave it (validated before it was saved; see services).
    rules = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="segment_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name
