"""Texts queued while the Celery broker (Redis) is down: the request that queued them still
answers. The dispatcher's wake-up, sent after the commit, can't be published; the texts wait
in PostgreSQL for beat's periodic dispatcher run once the broker is back."""

from __future__ import annotations

import pytest

from loyaltysms.tenancy.context import tenant_scope
from messaging.models import OutboundMessage
from messaging.services import outbound

from ..outage import broker_down
from .test_subscribers_api import opt_in


@pytest.fixture
def wake_due(monkeypatch):
    """This process hasn't woken the dispatcher lately: the next text wakes it at once."""
    monkeypatch.setattr(outbound, "_last_wake", -outbound.WAKE_INTERVAL)
    monkeypatch.setattr(outbound, "_wake_scheduled", False)


def test_an_opt_in_answers_while_the_broker_is_down(
    alice_api, alice_brand, wake_due, django_capture_on_commit_callbacks
):
    with broker_down(), django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = opt_in(alice_api)
    assert response.status_code == 201, response.content
    assert callbacks, "the wake-up was to be sent after the commit"
    with tenant_scope(alice_brand.tenant):
        (text,) = OutboundMessage.objects.filter(to="+12125550101")
    assert "Reply Y to confirm" in text.body
    assert text.status == "queued"  # for the dispatcher's periodic run


def test_a_stop_answers_while_the_broker_is_down(
    phone, wake_due, django_capture_on_commit_callbacks
):
    opt_in_sent = phone.received()
    with broker_down(), django_capture_on_commit_callbacks(execute=True):
        phone.text("STOP")  # 200 TwiML, and the confirmation of the opt-out queued
    assert len(phone.received()) == len(opt_in_sent) + 1
