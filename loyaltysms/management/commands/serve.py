"""`make run`: prepare the database, then run web, worker and beat from the Procfile."""

import os
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from loyaltysms.demo import DEMO_EMAIL, DEMO_PASSWORD

PROCFILE = Path(settings.BASE_DIR) / "Procfile"


def procfile_commands(path: Path = PROCFILE) -> dict[str, str]:
    """The process commands; docker-compose.yml runs the very same ones (a test compares)."""
    from honcho.environ import parse_procfile

    return dict(parse_procfile(path.read_text()).processes)


class Command(BaseCommand):
    help = "Migrate, seed the demo on first run, and run web + worker + beat until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--no-demo", action="store_true", help="don't create the demo brand")

    def handle(self, *args, **options):
        from honcho.manager import Manager
        from honcho.printer import Printer

        call_command("migrate", interactive=False, verbosity=0)
        if not options["no_demo"]:
            call_command("seed_demo")
        url = f"http://localhost:{settings.PORT}/"
        self.stdout.write(self.style.SUCCESS(f"\nDashboard: {url}"))
        self.stdout.write(f"Demo login: {DEMO_EMAIL} / {DEMO_PASSWORD}")
        self.stdout.write(f"API docs:  {url}api/docs/\nPress Ctrl-C to stop.\n\n")
        sys.stdout.flush()

        # gunicorn and celery live beside this Python (the virtualenv), which may not be on PATH.
        bin_dir = str(Path(sys.executable).parent)
        path = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
        env = dict(os.environ, PATH=path, PORT=str(settings.PORT), PYTHONUNBUFFERED="1")
        manager = Manager(Printer(sys.stdout))
        for name, command in procfile_commands().items():
            manager.add_process(name, command, env=env, cwd=str(settings.BASE_DIR))
        # `make run` wraps this in `python -m loyaltysms.embedded run`, which stops the embedded
        # servers it started once these processes have exited.
        manager.loop()
        sys.exit(manager.returncode)
