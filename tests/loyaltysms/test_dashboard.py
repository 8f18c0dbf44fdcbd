import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from loyaltysms import services
from loyaltysms.models import ApiKey, AuditEvent, Invitation, Membership, Role, User
from loyaltysms.tenancy.context import tenant_scope

from ..conftest import PASSWORD, add_member, api_client, signed_in


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_the_login_page():
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    page = Client().get("/login/")
    assert page.status_code == 200 and b"Sign in" in page.content


def test_login_with_email_in_any_case_and_logout(alice_brand):
    client = Client()
    response = client.post("/login/", {"username": "ALICE@bakery.test", "password": PASSWORD})
    assert response.status_code == 302
    assert "Alice&#x27;s Bakery" in client.get("/").content.decode()
    client.post(reverse("logout"))
    assert client.get("/").status_code == 302


def test_wrong_password_shows_an_error(alice_brand):
    response = Client().post("/login/", {"username": "alice@bakery.test", "password": "nope"})
    assert response.status_code == 200
    assert b"correct email" in response.content or b"Please enter a correct" in response.content


def test_new_api_key_is_shown_once_then_only_its_prefix(alice_client, alice_brand):
    response = alice_client.post(reverse("settings_api_keys"), {"name": "Shopify"})
    assert response.status_code == 201
    raw = re.search(r'id="new-api-key">(lsk_[^<]+)<', response.content.decode()).group(1)
    assert api_client(raw).get("/api/v1/tenant").status_code == 200
    listing = alice_client.get(reverse("settings_api_keys")).content.decode()
    assert raw not in listing and f"lsk_{raw.split('_')[1]}_…" in listing
    with tenant_scope(alice_brand.tenant):
        assert AuditEvent.objects.filter(action="api_key.created").count() == 2


def test_api_key_needs_a_name(alice_client, alice_brand):
    response = alice_client.post(reverse("settings_api_keys"), {"name": ""})
    assert response.status_code == 200 and b"This field is required" in response.content
    with tenant_scope(alice_brand.tenant):
        assert ApiKey.objects.count() == 1


def test_invited_newcomer_sets_a_password_and_joins(alice_client, alice_brand):
    response = alice_client.post(
        reverse("settings_team"), {"email": "Newbie@Bakery.test", "role": "marketer"}
    )
    link = re.search(r'id="invite-link">([^<]+)<', response.content.decode()).group(1)
    path = link.split("testserver", 1)[1]
    newcomer = Client()
    page = newcomer.get(path)
    assert page.status_code == 200 and b"Join Alice" in page.content
    mismatch = newcomer.post(path, {"new_password1": "abc", "new_password2": "abd"})
    assert mismatch.status_code == 200 and not User.objects.filter(email="newbie@bakery.test")
    joined = newcomer.post(
        path, {"new_password1": "a-fine-new-password", "new_password2": "a-fine-new-password"}
    )
    assert joined.status_code == 302
    user = User.objects.get(email="newbie@bakery.test")
    assert Membership.objects.get(user=user).role == Role.MARKETER
    assert "Alice&#x27;s Bakery" in newcomer.get("/").content.decode()
    # The link works once.
    assert Client().get(path).status_code == 404


def test_existing_user_accepts_after_signing_in(alice_brand, charlie_brand):
    new = services.invitation_create(
        tenant=alice_brand.tenant,
        email="charlie@cafe.test",
        role=Role.VIEWER,
        invited_by=alice_brand.owner,
    )
    path = reverse("invitation_accept", args=[new.token])
    assert b"Sign in" in Client().get(path).content
    wrong = signed_in(alice_brand.owner)  # signed in as someone else
    assert b"Sign out, then open this link" in wrong.get(path).content
    assert wrong.post(path).status_code == 200
    charlie = signed_in(charlie_brand.owner)
    assert charlie.post(path).status_code == 302
    assert (
        Membership.objects.get(tenant=alice_brand.tenant, user=charlie_brand.owner).role == "viewer"
    )


def test_expired_withdrawn_and_unknown_invitations_are_refused(alice_brand):
    new = services.invitation_create(
        tenant=alice_brand.tenant,
        email="late@x.test",
        role=Role.VIEWER,
        invited_by=alice_brand.owner,
    )
    with tenant_scope(alice_brand.tenant):
        Invitation.objects.filter(pk=new.invitation.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    assert Client().get(reverse("invitation_accept", args=[new.token])).status_code == 404
    assert Client().get(reverse("invitation_accept", args=["made-up"])).status_code == 404
    again = services.invitation_create(
        tenant=alice_brand.tenant,
        email="late@x.test",
        role=Role.VIEWER,
        invited_by=alice_brand.owner,
    )
    signed_in(alice_brand.owner).post(reverse("invitation_revoke", args=[again.invitation.pk]))
    assert Client().get(reverse("invitation_accept", args=[again.token])).status_code == 404


def test_inviting_a_member_twice_or_above_your_role_is_refused(alice_brand, bob):
    admin = add_member(alice_brand.tenant, "admin@bakery.test", Role.ADMIN)
    client = signed_in(admin)
    again = client.post(reverse("settings_team"), {"email": "bob@bakery.test", "role": "viewer"})
    assert b"is a member already" in again.content
    above = client.post(reverse("settings_team"), {"email": "z@z.test", "role": "owner"})
    assert above.status_code == 200 and b"Select a valid choice" in above.content
    with tenant_scope(alice_brand.tenant):
        assert not Invitation.objects.exists()
    assert mail.outbox == []


def test_the_last_owner_cannot_be_demoted_or_removed(alice_client, alice_brand):
    own = Membership.objects.get(tenant=alice_brand.tenant, user=alice_brand.owner)
    alice_client.post(reverse("member_role", args=[own.pk]), {"role": "viewer"})
    alice_client.post(reverse("member_remove", args=[own.pk]))
    own.refresh_from_db()
    assert own.role == Role.OWNER


def test_an_admin_cannot_unmake_an_owner(alice_brand):
    admin = add_member(alice_brand.tenant, "admin@bakery.test", Role.ADMIN)
    owner = Membership.objects.get(tenant=alice_brand.tenant, user=alice_brand.owner)
    signed_in(admin).post(reverse("member_role", args=[owner.pk]), {"role": "viewer"})
    signed_in(admin).post(reverse("member_remove", args=[owner.pk]))
    owner.refresh_from_db()
    assert owner.role == Role.OWNER


def test_role_change_is_audited(alice_client, alice_brand, bob):
    member = Membership.objects.get(tenant=alice_brand.tenant, user=bob)
    alice_client.post(reverse("member_role", args=[member.pk]), {"role": "admin"})
    member.refresh_from_db()
    assert member.role == Role.ADMIN
    page = alice_client.get(reverse("settings_activity")).content.decode()
    assert "member.role_changed" in page and "bob@bakery.test" in page


def test_user_without_a_brand_sees_what_to_do(db):
    loner = User.objects.create_user(email="loner@x.test", password=PASSWORD)
    client = signed_in(loner)
    assert client.get("/")["Location"] == reverse("brand_new")  # home: make a brand
    response = client.get(reverse("members"))
    assert response.status_code == 403 and b"not a member of any brand" in response.content
    assert reverse("brand_new").encode() in response.content


def test_mutating_pages_require_csrf(alice_brand):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice_brand.owner)
    assert client.post(reverse("settings_api_keys"), {"name": "x"}).status_code == 403
