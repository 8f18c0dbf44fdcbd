"""`make run` and `docker compose up` run the same processes."""

import re
from pathlib import Path

import yaml

from loyaltysms.management.commands.serve import procfile_commands
from loyaltysms.queues import Queue

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_docker_compose_parses_and_has_every_service():
    services = compose()["services"]
    assert {"postgres", "redis", "web", "worker", "hooks", "beat"} <= set(services)
    for name in ("web", "worker", "hooks", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["REDIS_URL"].startswith("redis://")


def test_compose_services_run_the_same_commands_as_make_run():
    services = compose()["services"]
    procfile = procfile_commands()
    assert set(procfile) == {"web", "worker", "hooks", "beat"}
    for name, command in procfile.items():
        assert services[name]["command"] == command, name


def test_make_run_runs_the_procfile_through_serve():
    makefile = (ROOT / "Makefile").read_text()
    run_recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE).group(1)
    assert "manage.py serve" in run_recipe
    serve = (ROOT / "loyaltysms/management/commands/serve.py").read_text()
    assert "procfile_commands()" in serve


def test_the_workers_consume_every_queue_and_hooks_alone():
    commands = procfile_commands()
    worker = re.search(r"-Q (\S+)", commands["worker"]).group(1).split(",")
    hooks = re.search(r"-Q (\S+)", commands["hooks"]).group(1).split(",")
    assert hooks == ["hooks"]  # other people's slow servers never hold up texts
    assert sorted(worker + hooks) == sorted(queue.value for queue in Queue)


def test_ci_runs_make_test():
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in ci and "set -euo pipefail" in ci
