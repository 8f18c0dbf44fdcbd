"""The webhook pages while the Celery broker (Redis) is down: the delivery a button makes is
written and the page answers; the task that would send it at once can't be published, so
beat's hooks_tick finds it due once the broker is back (endpoints_due)."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone

from hooks.services.delivery import endpoints_due

from ..outage import broker_down
from .conftest import make_endpoint
from .test_pages import deliveries


def test_a_test_send_is_kept_for_later_while_the_broker_is_down(
    alice_client, alice_brand, receiver, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(alice_brand, receiver.url).endpoint
    url = reverse("webhook_test_send", args=[endpoint.pk])
    with broker_down(), django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = alice_client.post(url)
    assert response.status_code == 302
    assert callbacks, "the delivery task was to be sent after the commit"
    (delivery,) = deliveries(alice_brand)
    assert delivery.status == "pending"
    assert (alice_brand.tenant.pk, endpoint.pk) in endpoints_due(timezone.now())
