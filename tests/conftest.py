"""Shared fixtures. Every test that touches one brand has an outsider brand beside it.

alice owns "Alice's Bakery"; bob is her teammate (marketer), vera a viewer there. charlie owns
"Charlie's Cafe", the outsider: nothing of alice's brand may ever be visible to him, or the
other way round.
"""

from dataclasses import dataclass

import pytest
from django.test import Client

from loyaltysms import services
from loyaltysms.models import Membership, Role, Tenant, User

PASSWORD = "correct-horse-battery-staple"


@dataclass
class Brand:
    tenant: Tenant
    owner: User
    api_key: str


def make_brand(slug: str, name: str, owner_email: str) -> Brand:
    created = services.tenant_create(
        slug=slug, name=name, owner_email=owner_email, owner_password=PASSWORD
    )
    return Brand(tenant=created.tenant, owner=created.owner, api_key=created.api_key.raw_key)


def add_member(tenant: Tenant, email: str, role: Role) -> User:
    user = User.objects.filter(email=email).first() or User.objects.create_user(
        email=email, password=PASSWORD
    )
    Membership.objects.create(user=user, tenant=tenant, role=role)
    return user


@pytest.fixture
def alice_brand(db) -> Brand:
    return make_brand("alices-bakery", "Alice's Bakery", "alice@bakery.test")


@pytest.fixture
def charlie_brand(db) -> Brand:
    return make_brand("charlies-cafe", "Charlie's Cafe", "charlie@cafe.test")


@pytest.fixture
def bob(alice_brand) -> User:
    return add_member(alice_brand.tenant, "bob@bakery.test", Role.MARKETER)


@pytest.fixture
def vera(alice_brand) -> User:
    return add_member(alice_brand.tenant, "vera@bakery.test", Role.VIEWER)


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice_brand) -> Client:
    return signed_in(alice_brand.owner)


def api_client(key: str) -> Client:
    return Client(headers={"Authorization": f"Bearer {key}"})
