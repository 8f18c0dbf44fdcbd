from django.contrib.postgres.fields import ArrayField
from django.db import models

from loyaltysms.models import TenantOwnedModel


class Widget(TenantOwnedModel):
    """A brand's storefront widget: its publishable key (in the page's <script> tag; it can
    only do what the widget does), the secret the store's server signs a signed-in customer
    with (stored encrypted), and the store origins allowed to call it from a browser."""

    publishable_key = models.CharField(max_length=40, unique=True)
    signing_secret_encrypted = models.BinaryField()
    allowed_origins = ArrayField(models.CharField(max_length=200), default=list, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant"], name="widget_one_per_tenant")]

    def __str__(self) -> str:
        return self.publishable_key
