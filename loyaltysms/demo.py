"""The demo brand: what `make run` shows on a fresh clone.

Each domain app may add its part in a `demo` module with `seed(tenant, *, now) -> dict`; they
are found at run time, so this core package never imports the apps above it.
"""

import importlib

from django.apps import apps
from django.db import transaction
from django.utils import timezone

from loyaltysms.models import Tenant
from loyaltysms.services import tenant_create

DEMO_SLUG = "demo"
DOMAIN_APPS = ("programs", "messaging", "segments", "automations")
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
    seeded = {}
    for app in DOMAIN_APPS:
        if not apps.is_installed(app):
            continue
        try:
            module = importlib.import_module(f"{app}.demo")
        except ModuleNotFoundError as error:
            if error.name != f"{app}.demo":
                raise
            continue
        seeded[app] = module.seed(created.tenant, now=timezone.now())
    return {
        "created": True,
        "tenant": DEMO_SLUG,
        "api_key": created.api_key.raw_key,
        "seeded": seeded,
    }
