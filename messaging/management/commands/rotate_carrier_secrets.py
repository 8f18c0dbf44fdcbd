from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import models, transaction

from messaging.crypto import rotate


def encrypted_fields() -> list[tuple[type[models.Model], str]]:
    """Every stored secret: the binary fields named *_encrypted of every app (carrier
    credentials, the widget's signing secrets, Shopify and webhook secrets, …)."""
    return [
        (model, field.name)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, models.BinaryField) and field.name.endswith("_encrypted")
    ]


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (carrier credentials, widget, Shopify and webhook "
        "secrets) under the first key of FIELD_ENCRYPTION_KEY. To rotate: prepend a new key "
        "(new,old), run this, then drop the old key."
    )

    @transaction.atomic
    def handle(self, *args, **options):
        for model, name in encrypted_fields():
            # WARNING: every tenant's rows, on purpose: a key rotation covers all of them.
            manager = getattr(model.objects, "unscoped", None)
            rows = (manager() if manager else model.objects.all()).select_for_update().only(name)
            rows = rows.exclude(**{f"{name}__isnull": True})  # nothing stored
            count = 0
            for row in rows:
                setattr(row, name, rotate(getattr(row, name)))
                row.save(update_fields=[name])
                count += 1
            self.stdout.write(f"re-encrypted {count} {model._meta.label}.{name}")
