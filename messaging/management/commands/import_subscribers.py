import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from loyaltysms.models import Tenant
from messaging.services.imports import subscribers_import_csv


class Command(BaseCommand):
    help = (
        "Import numbers that consented elsewhere, with their evidence, from CSV (columns: "
        "phone, consented_at, consent_text, consent_url, ip, user_agent, source). They are "
        "subscribed without a confirmation text. FILE may be - for standard input."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("file")
        parser.add_argument(
            "--consent-text", default="", help="The disclosure, for files without that column"
        )

    def handle(self, *args, **options):
        tenant = Tenant.objects.filter(slug=options["slug"]).first()
        if tenant is None:
            raise CommandError(f"No brand with the slug {options['slug']!r}")
        if options["file"] == "-":
            content = sys.stdin.buffer.read()
        else:
            try:
                with open(options["file"], "rb") as fh:
                    content = fh.read()
            except OSError as exc:
                raise CommandError(f"Can't read {options['file']}: {exc.strerror}") from None
        report = subscribers_import_csv(
            tenant=tenant,
            file=content,
            now=timezone.now(),
            consent_text=options["consent_text"],
            actor="import_subscribers",
        )
        for line, why in report.errors:
            self.stderr.write(f"line {line}: {why}")
        self.stdout.write(
            f"imported {report.imported}, already subscribed {report.already_subscribed}, "
            f"failed {report.failed}"
        )
        if report.failed:
            sys.exit(1)
