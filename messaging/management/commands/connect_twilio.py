import json

from django.core.management.base import BaseCommand, CommandError

from loyaltysms.models import Tenant
from messaging.services.setup import SetupError, sender_connect_twilio


class Command(BaseCommand):
    help = (
        "Connect a brand to Twilio: a From number or a Messaging Service becomes its default "
        "sender. The auth token is stored encrypted (FIELD_ENCRYPTION_KEY) and never printed."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--account-sid", required=True)
        parser.add_argument("--auth-token", required=True)
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--from", dest="from_number")
        source.add_argument("--messaging-service-sid", default="")
        parser.add_argument("--mps", type=int, default=1, help="The sender's throughput")

    def handle(self, *args, **options):
        tenant = Tenant.objects.filter(slug=options["slug"]).first()
        if tenant is None:
            raise CommandError(f"No brand with the slug {options['slug']!r}")
        try:
            sender = sender_connect_twilio(
                tenant=tenant,
                account_sid=options["account_sid"],
                auth_token=options["auth_token"],
                from_number=options["from_number"],
                messaging_service_sid=options["messaging_service_sid"] or "",
                mps=options["mps"],
            )
        except SetupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            json.dumps(
                {
                    "tenant": tenant.slug,
                    "sender": sender.phone_number or sender.messaging_service_sid,
                    "mps": sender.mps,
                }
            )
        )
