import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from loyaltysms.models import Tenant
from programs.services.imports import members_import_csv

SHOWN_ERRORS = 20


class Command(BaseCommand):
    help = "Import members from a CSV file (FILE, or - for standard input) into a brand."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the brand's slug")
        parser.add_argument("file", help="CSV with a header row; - reads standard input")

    def handle(self, *args, slug: str, file: str, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"No brand with the slug {slug!r}.")
        if file == "-":
            report = self._run(tenant, sys.stdin, total=None)
        else:
            path = Path(file)
            if not path.is_file():
                raise CommandError(f"No such file: {file}")
            with path.open(encoding="utf-8-sig", errors="replace", newline="") as counting:
                total = max(sum(1 for _ in counting) - 1, 0)
            with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
                report = self._run(tenant, handle, total=total)
        self.stdout.write(
            f"created {report.created}, updated {report.updated}, failed {report.failed}"
        )
        for error in report.errors[:SHOWN_ERRORS]:
            problems = "; ".join(
                f"{name}: {' '.join(messages)}" for name, messages in error.errors.items()
            )
            who = f" ({error.external_id})" if error.external_id else ""
            self.stdout.write(f"line {error.line}{who}: {problems}")
        if report.failed > SHOWN_ERRORS:
            self.stdout.write(f"… and {report.failed - SHOWN_ERRORS} more")
        if report.failed:
            raise CommandError(f"{report.failed} row(s) were not imported; see above.")

    def _run(self, tenant, handle, *, total):
        with tqdm(total=total, unit="row", file=sys.stderr, disable=None) as bar:
            return members_import_csv(
                tenant=tenant, file=handle, now=timezone.now(), progress=bar.update
            )
