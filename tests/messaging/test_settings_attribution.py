"""The attribution windows on the SMS settings form: an admin sets them (audited, used by the
next attribution scan at once), out-of-range values are errors beside the field, and only
admins can change them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from loyaltysms.models import AuditEvent
from loyaltysms.tenancy.context import tenant_scope
from messaging.attribution import windows
from messaging.models import MessagingSettings

from ..conftest import signed_in
from .test_dashboard import field_errors, settings_form

SETTINGS = reverse("sms_settings")


def saved(tenant) -> MessagingSettings:
    with tenant_scope(tenant):
        return MessagingSettings.objects.get()


def test_the_form_explains_last_click_attribution(alice_brand):
    page = signed_in(alice_brand.owner).get(SETTINGS).content.decode()
    assert 'id="attribution"' in page
    assert "Last-click attribution" in page
    assert 'name="attribution_click_days"' in page and 'max="30"' in page
    assert 'name="attribution_delivery_hours"' in page and 'max="168"' in page


def test_an_admin_sets_the_windows_and_the_change_is_audited(alice_brand):
    tenant = alice_brand.tenant
    assert windows(tenant) == (timedelta(days=5), timedelta(hours=24))  # the defaults
    response = signed_in(alice_brand.owner).post(
        SETTINGS,
        settings_form(tenant, attribution_click_days=7, attribution_delivery_hours=0),
    )
    assert response.status_code == 302
    row = saved(tenant)
    assert (row.attribution_click_days, row.attribution_delivery_hours) == (7, 0)
    # The cached settings were dropped: the scan sees the new windows now.
    assert windows(tenant) == (timedelta(days=7), timedelta(0))
    with tenant_scope(tenant):
        event = AuditEvent.objects.get(action="messaging.settings")
    assert event.actor == alice_brand.owner
    assert event.detail == {"attribution_click_days": "7", "attribution_delivery_hours": "0"}
    page = signed_in(alice_brand.owner).get(SETTINGS).content.decode()
    assert 'name="attribution_click_days" value="7"' in page


def test_saving_unchanged_windows_writes_no_audit_row(alice_brand):
    tenant = alice_brand.tenant
    client = signed_in(alice_brand.owner)
    form = settings_form(tenant, attribution_click_days=5, attribution_delivery_hours=24)
    assert client.post(SETTINGS, form).status_code == 302
    with tenant_scope(tenant):
        assert not AuditEvent.objects.filter(action="messaging.settings").exists()


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"attribution_click_days": 0}, "attribution_click_days", "greater than or equal to 1"),
        ({"attribution_click_days": 31}, "attribution_click_days", "less than or equal to 30"),
        ({"attribution_click_days": ""}, "attribution_click_days", "Give a number"),
        (
            {"attribution_delivery_hours": 169},
            "attribution_delivery_hours",
            "less than or equal to 168",
        ),
        (
            {"attribution_delivery_hours": -1},
            "attribution_delivery_hours",
            "greater than or equal to 0",
        ),
        ({"attribution_delivery_hours": "a day"}, "attribution_delivery_hours", "whole number"),
    ],
)
def test_out_of_range_windows_are_errors_beside_the_field(alice_brand, changes, field, says):
    tenant = alice_brand.tenant
    response = signed_in(alice_brand.owner).post(SETTINGS, settings_form(tenant, **changes))
    assert response.status_code == 422
    errors = field_errors(response.content.decode(), field)
    assert errors and says in errors[0], errors
    row = saved(tenant)
    assert (row.attribution_click_days, row.attribution_delivery_hours) == (5, 24)


def test_only_admins_change_the_windows_and_everyone_reads_them(alice_brand, bob, vera):
    tenant = alice_brand.tenant
    for user in (bob, vera):
        client = signed_in(user)
        response = client.post(SETTINGS, settings_form(tenant, attribution_click_days=9))
        assert response.status_code == 403
        page = client.get(SETTINGS).content.decode()
        assert "within 5 days after a click" in page and "within 24 hours after" in page
    assert saved(tenant).attribution_click_days == 5


def test_the_outsider_keeps_their_own_windows(alice_brand, charlie_brand):
    signed_in(alice_brand.owner).post(
        SETTINGS, settings_form(alice_brand.tenant, attribution_click_days=2)
    )
    assert windows(alice_brand.tenant)[0] == timedelta(days=2)
    assert windows(charlie_brand.tenant)[0] == timedelta(days=5)
    page = signed_in(charlie_brand.owner).get(SETTINGS).content.decode()
    assert 'name="attribution_click_days" value="5"' in page
