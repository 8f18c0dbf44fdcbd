"""An endpoint can't reach this network's own services: its URL must name a public address,
and the sender checks the address a host name resolves to (so DNS can't point it back
inside after the check). HOOKS_ALLOW_PRIVATE_URLS, for development and these tests'
receivers, lifts both."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from hooks.models import DeliveryStatus, WebhookDelivery, validate_endpoint_url
from loyaltysms.tenancy.context import tenant_scope

from .conftest import make_endpoint, order
from .test_delivery import send


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/hooks",
        "https://localhost/hooks",
        "https://127.0.0.1/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
        "https://redis.internal/hooks",
        "https://postgres.local/hooks",
        "http://example.com/hooks",
    ],
)
def test_private_or_plain_http_urls_are_refused(settings, url):
    settings.HOOKS_ALLOW_PRIVATE_URLS = False
    with pytest.raises(ValidationError):
        validate_endpoint_url(url)


def test_public_https_urls_are_fine(settings):
    settings.HOOKS_ALLOW_PRIVATE_URLS = False
    validate_endpoint_url("https://hooks.example.com/loyalty")
    validate_endpoint_url("https://93.184.216.34/loyalty")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_sender_refuses_a_private_address_even_by_name(
    alice_brand, receiver, clock, settings, host
):
    url = receiver.url.replace("127.0.0.1", host)
    endpoint = make_endpoint(alice_brand, url, ["points_earned"]).endpoint  # allowed then
    order(alice_brand, "ann", 1, clock())
    from hooks.services.fan_out import events_fan_out

    events_fan_out(tenant=alice_brand.tenant, now=clock())
    settings.HOOKS_ALLOW_PRIVATE_URLS = False
    sent = send(alice_brand, endpoint, clock)
    assert (sent.delivered, sent.retrying) == (0, 1)
    assert receiver.delivered() == []
    with tenant_scope(alice_brand.tenant):
        delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING
    # An address: refused before connecting; a name: aiohttp reports the resolver's refusal.
    assert "public address" in delivery.last_error or "DNSError" in delivery.last_error
