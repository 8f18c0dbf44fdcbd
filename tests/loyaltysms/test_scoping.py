import pytest

from loyaltysms.models import ApiKey, AuditEvent
from loyaltysms.tenancy.context import TenantScopeError, current_tenant, tenant_scope


def test_query_outside_any_tenant_scope_raises(alice_brand):
    with pytest.raises(TenantScopeError):
        list(ApiKey.objects.all())
    with pytest.raises(TenantScopeError):
        ApiKey.objects.filter(name="Default").exists()
    with pytest.raises(TenantScopeError):
        ApiKey.objects.create(name="x", prefix="p", key_hash="h")


def test_scope_shows_only_that_tenants_rows(alice_brand, charlie_brand):
    with tenant_scope(alice_brand.tenant):
        keys = list(ApiKey.objects.all())
        assert keys and {key.tenant_id for key in keys} == {alice_brand.tenant.pk}
        charlie_key = ApiKey.objects.unscoped().filter(tenant=charlie_brand.tenant).first()
        # Even asking by primary key or by the other tenant's FK finds nothing.
        assert not ApiKey.objects.filter(pk=charlie_key.pk).exists()
        assert not ApiKey.objects.filter(tenant=charlie_brand.tenant).exists()
    with tenant_scope(charlie_brand.tenant):
        assert ApiKey.objects.filter(pk=charlie_key.pk).exists()


def test_create_for_another_tenant_inside_a_scope_is_refused(alice_brand, charlie_brand):
    with tenant_scope(alice_brand.tenant), pytest.raises(TenantScopeError):
        AuditEvent.objects.create(tenant=charlie_brand.tenant, action="sneaky")
    with tenant_scope(alice_brand.tenant):
        event = AuditEvent.objects.create(action="fine")
    assert event.tenant_id == alice_brand.tenant.pk


def test_unscoped_is_the_deliberate_escape_hatch(alice_brand, charlie_brand):
    tenants = set(ApiKey.objects.unscoped().values_list("tenant_id", flat=True))
    assert tenants == {alice_brand.tenant.pk, charlie_brand.tenant.pk}


def test_scope_is_restored_after_nested_scopes(alice_brand, charlie_brand):
    assert current_tenant() is None
    with tenant_scope(alice_brand.tenant):
        with tenant_scope(charlie_brand.tenant):
            assert current_tenant() == charlie_brand.tenant
        assert current_tenant() == alice_brand.tenant
    assert current_tenant() is None


def test_scope_does_not_leak_after_a_request(alice_client):
    assert alice_client.get("/").status_code == 200
    assert current_tenant() is None
    with pytest.raises(TenantScopeError):
        ApiKey.objects.count()
