"""The demo brand: what `make run` shows on a fresh clone. Later areas add their data here."""

from django.db import transaction

from loyaltysms.models import Tenant
from loyaltysms.services import tenant_create

DEMO_SLUG = "demo"
DEMO_EMAIL = "demo@loyaltysms.test"
DEMO_PASSWORD = "demo-password-123"  # noqa: S105 - the public demo account, printed on purpose


@transaction.atomic
def seed_demo() -> dict:
    if Tenant.objects.filter(slug=DEMO_SLUG).exists():
        return {"created": False, "tenant": DEMO_SLUG, "api_key": None}
    created = tenant_create(
        slug=DEMO_SLUG,
        name="Demo Coffee Co.",
        owner_email=DEMO_EMAIL,
        owner_password=DEMO_PASSWORD,
        timezone_name="America/New_York",
    )
    return {"created": True, "tenant": DEMO_SLUG, "api_key": created.api_key.raw_key}
