from django.core.management.base import BaseCommand, CommandError

from loyaltysms.models import Tenant
from loyaltysms.services import api_key_create


class Command(BaseCommand):
    help = "Create a new API key for a brand and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name", default="Created from the command line")

    def handle(self, *args, **options):
        tenant = Tenant.objects.filter(slug=options["slug"]).first()
        if tenant is None:
            raise CommandError(f"No brand with the slug {options['slug']!r}")
        self.stdout.write(api_key_create(tenant=tenant, name=options["name"]).raw_key)
