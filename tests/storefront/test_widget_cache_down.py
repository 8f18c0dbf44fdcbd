"""The widget while the Redis cache is down or hangs: its rate limits can't count there,
and the widget keeps answering (within seconds) instead of failing with them; the brand's
hourly sign-up cap (texts cost the brand money) is counted in PostgreSQL meanwhile, so it
still holds."""

from __future__ import annotations

import time

import pytest

from loyaltysms.tenancy.context import tenant_scope
from messaging.models import Subscriber
from messaging.services.setup import messaging_settings_get
from storefront.services import widget_get, widget_update

from ..outage import cache_down, cache_hung
from .test_widget_api import STORE, Store


@pytest.fixture
def store(alice_brand) -> Store:
    """A page of the brand's store, its widget switched on."""
    widget = widget_update(widget=widget_get(alice_brand.tenant), origins=[STORE], enabled=True)
    return Store(widget.publishable_key)


def test_the_widget_answers_while_the_cache_is_down(store):
    with cache_down():
        response = store.get("widget_config")
    assert response.status_code == 200, response.content


def test_the_widget_answers_within_seconds_while_the_cache_hangs(store):
    began = time.monotonic()
    with cache_hung():
        response = store.get("widget_config")
    assert response.status_code == 200, response.content
    assert time.monotonic() - began < 5


def test_sign_ups_go_through_while_the_cache_is_down(store, alice_brand):
    version = messaging_settings_get(alice_brand.tenant).disclosure_version
    with cache_down():
        response = store.post(
            "widget_subscribe",
            {"phone": "+12125550170", "consent": True, "disclosure_version": version},
        )
    assert response.status_code == 202, response.content
    with tenant_scope(alice_brand.tenant):
        assert Subscriber.objects.filter(phone="+12125550170", status="pending").exists()


def test_the_sign_up_cap_holds_while_the_cache_is_down(store, alice_brand, settings):
    settings.WIDGET_SIGNUPS_PER_HOUR = 2
    version = messaging_settings_get(alice_brand.tenant).disclosure_version
    with cache_down():
        answers = [store.sign_up(f"+1212555018{n}", version) for n in range(3)]
    assert answers == [202, 202, 429]
