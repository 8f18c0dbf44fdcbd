from django.core.management.base import BaseCommand
from django.db import transaction

from messaging.crypto import rotate
from messaging.models import Sender


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored carrier credential under the first key of "
        "FIELD_ENCRYPTION_KEY. To rotate: prepend a new key (new,old), run this, then drop "
        "the old key."
    )

    @transaction.atomic
    def handle(self, *args, **options):
        # WARNING: every tenant's senders, on purpose: a key rotation covers all of them.
        senders = Sender.objects.unscoped().select_for_update().only("auth_token_encrypted")
        count = 0
        for sender in senders:
            sender.auth_token_encrypted = rotate(sender.auth_token_encrypted)
            sender.save(update_fields=["auth_token_encrypted"])
            count += 1
        self.stdout.write(f"re-encrypted {count} sender credential(s)")
