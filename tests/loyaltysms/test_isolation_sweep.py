"""The isolation sweep itself: add a page that reads another brand's member (the classic bug)
and the sweep fails — first because the new route isn't in its table, and if someone adds it
there to quiet that, because the route answers another brand's id with 200 instead of 404."""

from django.test import override_settings

from programs.models import Member

from ..conftest import signed_in
from .test_isolation import (
    leaking_routes,
    other_tenant_api_ids,
    other_tenant_ids,
    uncovered_id_routes,
)

LEAKY = "tests.loyaltysms.leaky_urls"


def test_a_new_unscoped_route_is_caught_as_uncovered(alice_brand, charlie_brand):
    covered = set(other_tenant_ids(charlie_brand)) | set(other_tenant_api_ids(charlie_brand))
    assert uncovered_id_routes(covered) == set()  # the project as it is
    with override_settings(ROOT_URLCONF=LEAKY):
        assert uncovered_id_routes(covered) == {"leaky_member"}


def test_a_listed_unscoped_route_is_caught_leaking(alice_brand, charlie_brand):
    charlie_member = Member.objects.unscoped().filter(tenant=charlie_brand.tenant)
    ids = other_tenant_ids(charlie_brand)  # makes charlie's member among the rest
    member_id = charlie_member.values_list("pk", flat=True).first()
    client = signed_in(alice_brand.owner)
    with override_settings(ROOT_URLCONF=LEAKY):
        assert leaking_routes(client, ids, "get") == []  # the real routes still hold
        leaks = leaking_routes(client, {"leaky_member": {"member_id": member_id}}, "get")
    assert leaks == [("leaky_member", 200)]
