import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from loyaltysms.services import tenant_create


class Command(BaseCommand):
    help = 'Create a brand with its owner and a first API key; prints {"tenant", "api_key"}.'

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--owner", required=True, help="the owner's email (created if new)")
        parser.add_argument("--password", help="the new owner's password (else set it later)")
        parser.add_argument("--timezone", default="America/New_York")
        parser.add_argument("--currency", default="USD")
        parser.add_argument("--country", default="US")

    def handle(self, *args, **options):
        try:
            created = tenant_create(
                slug=options["slug"],
                name=options["name"],
                owner_email=options["owner"],
                owner_password=options["password"],
                timezone_name=options["timezone"],
                currency=options["currency"].upper(),
                default_country=options["country"].upper(),
            )
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from None
        if not created.owner_created and options["password"]:
            self.stderr.write(f"{options['owner']} exists already: added as owner, password kept.")
        self.stdout.write(
            json.dumps({"tenant": created.tenant.slug, "api_key": created.api_key.raw_key})
        )
