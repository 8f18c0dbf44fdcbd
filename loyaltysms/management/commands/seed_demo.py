import json

from django.core.management.base import BaseCommand

from loyaltysms.demo import DEMO_EMAIL, DEMO_PASSWORD, seed_demo


class Command(BaseCommand):
    help = "Create the demo brand with data to explore (does nothing if it exists)."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, **options):
        result = seed_demo()
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        if result["created"]:
            self.stdout.write(self.style.SUCCESS(f"Demo brand created: {result['tenant']}"))
            self.stdout.write(f"Demo API key (shown once): {result['api_key']}")
        else:
            self.stdout.write(f"Demo brand {result['tenant']} exists already.")
        self.stdout.write(f"Sign in as {DEMO_EMAIL} / {DEMO_PASSWORD}")
