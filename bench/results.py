"""Run every benchmark in turn and write bench/RESULTS.md: the machine, a summary table, and
each benchmark's full output.

    make bench
    (= .venv/bin/python -m loyaltysms.embedded run -- python bench/results.py)
    make bench BENCH_ARGS="--quick"                   every benchmark at a small scale
    make bench BENCH_ARGS="--only keyset,noisy"       some of them

Each benchmark runs as its own process, as `make bench-<name>` runs it, with BENCH_RECORD
naming a file where harness.record() appends its headline figures (one JSON line each). Its
output goes to the terminal as it comes and into RESULTS.md. A benchmark that crashes, or
runs past its time limit (20 minutes, or `--limit SECONDS`; it gets SIGINT so it drops its
database, then SIGKILL 30 s later), is shown as such in the table and the run goes on.
`--render` makes RESULTS.md again from a kept run folder (`--keep DIR`) without running
anything.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Bench:
    name: str  # as in `make bench-<name>`
    script: str
    question: str
    quick: str  # small-scale arguments, for checking that the whole run works
    limit: int = 1200  # seconds before it is stopped (--limit overrides)


BENCHES = (
    Bench(
        "orders",
        "bench_order_ingest.py",
        "order ingest vs a bare DRF endpoint",
        "--seconds 2 --rounds 1 --members 200",
    ),
    Bench(
        "stop",
        "bench_stop_webhook.py",
        "STOP webhook latency vs a bare view",
        "--rate 50 --seconds 2 --rounds 1 --warmup 1 --subscribers 2000",
    ),
    Bench(
        "callbacks",
        "bench_status_callback.py",
        "status-callback ingest vs COPY + UPDATE",
        "--seconds 2 --rounds 1 --texts 5000",
    ),
    Bench(
        "segments",
        "bench_segment_count.py",
        "segment count vs hand-written SQL",
        "--members 20000 --rounds 1",
    ),
    Bench(
        "campaigns",
        "bench_campaign_fanout.py",
        "campaign fan-out vs COPY",
        "--members 20000 --rounds 1",
    ),
    Bench(
        "dispatch",
        "bench_dispatch_rate.py",
        "dispatcher pacing at 3 / 100 / 1,000 MPS",
        "--rates 3,100 --seconds 4,3 --processes 1,1 --profile 0",
    ),
    Bench(
        "scan",
        "bench_daily_scan.py",
        "the flows' daily scan vs hand-written SQL",
        "--tenants 20 --members 100 --rounds 1 --full-rounds 1",
    ),
    Bench(
        "keyset",
        "bench_keyset_page.py",
        "keyset page 10,000 vs page 1",
        "--pages 100 --rounds 1 --requests 10 --warmup 5",
    ),
    Bench(
        "noisy",
        "bench_noisy_neighbour.py",
        "noisy neighbour: B's API p99 with A at 10x its share",
        "--seconds 3 --rounds 1",
    ),
    Bench(
        "expiry",
        "bench_expiry.py",
        "points expiry sweep vs one UPDATE",
        "--lots 20000",
    ),
)


@dataclass
class Outcome:
    name: str
    script: str
    question: str
    command: str
    started: str
    seconds: float
    exit_code: int | None  # None: stopped at its time limit
    output: str
    records: list[dict] = field(default_factory=list)


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _read(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _git(*args: str) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - fixed read-only git commands
            ["git", *args],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def server_versions() -> tuple[str, str]:
    """PostgreSQL's and Redis's versions, from the servers the benchmarks use (DATABASE_URL /
    REDIS_URL, or the embedded ones), asked in a child so this process stays Django-free."""
    code = (
        "import json, sys; sys.path.insert(0, '.');"
        "from bench import harness; harness.setup_django('postgres');"
        "from django.conf import settings; from django.db import connection;"
        "import redis;"
        "cur = connection.cursor(); cur.execute('SHOW server_version');"
        "pg = cur.fetchone()[0];"
        "rd = redis.Redis.from_url(settings.REDIS_URL).info('server')['redis_version'];"
        "print(json.dumps([pg, rd]))"
    )
    try:
        done = subprocess.run(  # noqa: S603 - this interpreter, fixed code
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        pg, rd = json.loads(done.stdout.strip().splitlines()[-1])
        return pg, rd
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return "unknown", "unknown"


def machine() -> dict:
    memory = _read("/proc/meminfo", "MemTotal")
    gib = f"{int(memory.split()[0]) / 1024 / 1024:.1f} GiB" if memory else "unknown"
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    postgres, redis = server_versions()
    return {
        "cpu": _read("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory": gib,
        "host": platform.node(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": postgres,
        "redis": redis,
        "database": "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded",
        "commit": commit + (" with uncommitted changes" if dirty else ""),
    }


def run_one(bench: Bench, args: tuple[str, ...], folder: Path) -> Outcome:
    records = folder / f"{bench.name}.jsonl"
    records.unlink(missing_ok=True)
    command = [sys.executable, str(HERE / bench.script), *args]
    shown = "python bench/" + " ".join([bench.script, *map(shlex.quote, args)])
    started = datetime.now(UTC)
    print(f"\n===== {shown}   ({started:%H:%M:%S} UTC, load {load_average()})", flush=True)
    began = time.monotonic()
    lines: list[str] = []
    process = subprocess.Popen(  # noqa: S603 - a script of this folder, its listed arguments
        command,
        cwd=ROOT,
        env={**os.environ, "BENCH_RECORD": str(records), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: stopped whole at the time limit
    )
    timed_out = False

    def signal_group(sig: int) -> None:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, sig)

    def stop() -> None:
        # SIGINT first: the benchmark's `finally` blocks drop its database and stop its
        # servers; whatever is still running 30 s later is killed.
        nonlocal timed_out
        timed_out = True
        signal_group(signal.SIGINT)
        kill.start()

    timer = threading.Timer(bench.limit, stop)
    kill = threading.Timer(30, signal_group, args=(signal.SIGKILL,))
    timer.daemon = kill.daemon = True
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
        code = process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reaches only this process (the benchmark has a session of its own).
        signal_group(signal.SIGINT)
        process.wait(timeout=60)
        raise
    finally:
        timer.cancel()
        kill.cancel()
    seconds = time.monotonic() - began
    found = []
    if records.exists():
        found = [json.loads(line) for line in records.read_text().splitlines() if line.strip()]
    print(
        f"===== {bench.script}: "
        + (f"stopped after {bench.limit} s" if timed_out else f"exit {code}")
        + f", {seconds:.0f} s, {len(found)} figures recorded",
        flush=True,
    )
    outcome = Outcome(
        name=bench.name,
        script=bench.script,
        question=bench.question,
        command=shown,
        started=f"{started:%H:%M:%S}",
        seconds=seconds,
        exit_code=None if timed_out else code,
        output="".join(lines),
        records=found,
    )
    (folder / f"{bench.name}.json").write_text(json.dumps(asdict(outcome)))
    return outcome


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") if text not in (None, "") else "—"


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "—"}[met]


def _crashed(outcome: Outcome) -> str:
    """The exception's last line, if the benchmark ended with a traceback."""
    if outcome.exit_code == 0 or "Traceback (most recent call last)" not in outcome.output:
        return ""
    lines = [line for line in outcome.output.splitlines() if line.strip()]
    return lines[-1].strip()[:200] if lines else "?"


def _status(outcome: Outcome) -> str:
    if outcome.exit_code is None:
        return f"**stopped at its time limit** ({outcome.seconds:.0f} s)"
    if outcome.exit_code == 0:
        return "ok"
    if crash := _crashed(outcome):
        return f"**crashed** (exit {outcome.exit_code}: {crash})"
    if outcome.records:
        return f"exit {outcome.exit_code} (a goal missed or a check failed: see its output)"
    return f"**failed** (exit {outcome.exit_code}, no figures)"


def render(run: dict, outcomes: list[Outcome]) -> str:
    m = run["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (bench/results.py); every figure's baseline was measured in "
        "the same run, on the same machine and data. How each benchmark works: bench/README.md "
        "and each script's docstring.",
        "",
        f"- Date: {run['started']} to {run['ended']} UTC ({run['minutes']:.0f} min)"
        + (f"; `{run['arguments']}`" if run["arguments"] else ""),
        *(
            [
                "- **Small scale (`--quick`): a check that everything runs; the figures are not "
                "the benchmarks' and say nothing about the goals.**"
            ]
            if run.get("quick")
            else []
        ),
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory']} RAM; host {m['host']}, "
        f"Linux {m['kernel']}, Python {m['python']}",
        f"- Load average (1 / 5 / 15 min): {run['load_start']} at start, {run['load_end']} at end",
        f"- PostgreSQL {m['postgres']}, Redis {m['redis']} ({m['database']}, loopback)",
        f"- Commit: {m['commit']}",
        "",
        "## Summary",
        "",
        "| benchmark | figure | value | baseline (same run) | ratio | goal | |",
        "|---|---|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        if not outcome.records or outcome.exit_code is None or _crashed(outcome):
            lines.append(
                f"| {outcome.name} | {_cell(outcome.question)} | {_status(outcome)} | — | — | — "
                "| — |"
            )
        for r in outcome.records:
            lines.append(
                "| "
                + " | ".join(
                    _cell(x)
                    for x in (
                        outcome.name,
                        r["figure"],
                        r["value"],
                        r["baseline"],
                        r["ratio"],
                        r["goal"],
                    )
                )
                + f" | {_verdict(r['met'])} |"
            )
    lines += ["", "## Each benchmark's output", ""]
    for outcome in outcomes:
        lines += [
            f"### {outcome.name}: {outcome.question}",
            "",
            f"`{outcome.command}` — started {outcome.started} UTC, {outcome.seconds:.0f} s, "
            f"{_status(outcome)}",
            "",
            "```",
            outcome.output.rstrip("\n"),
            "```",
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark at a small scale")
    parser.add_argument("--only", default="", help="comma-separated names (orders, keyset, …)")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--limit", type=int, default=0, help="seconds a benchmark may take")
    parser.add_argument("--keep", default="", help="keep the run's records in this folder")
    parser.add_argument("--render", default="", help="only write RESULTS.md from this folder")
    args = parser.parse_args()

    if args.render:
        folder = Path(args.render)
        run = json.loads((folder / "run.json").read_text())
        outcomes = [
            Outcome(**json.loads((folder / f"{b}.json").read_text())) for b in run["benches"]
        ]
        Path(args.out).write_text(render(run, outcomes))
        print(f"wrote {args.out}")
        return 0

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - {b.name for b in BENCHES}
    if unknown:
        parser.error(f"no benchmark named {', '.join(sorted(unknown))}")
    chosen = [b for b in BENCHES if not names or b.name in names]
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-run-"))
    folder.mkdir(parents=True, exist_ok=True)

    started = datetime.now(UTC)
    run = {
        "started": f"{started:%Y-%m-%d %H:%M}",
        "load_start": load_average(),
        "machine": machine(),
        "arguments": " ".join(sys.argv[1:]),
        "quick": args.quick,
        "benches": [b.name for b in chosen],
    }
    print(
        f"{len(chosen)} benchmarks: {', '.join(b.name for b in chosen)}; "
        f"load average {run['load_start']}; records in {folder}",
        flush=True,
    )
    if args.limit:
        chosen = [dataclasses.replace(b, limit=args.limit) for b in chosen]
    outcomes = [run_one(b, tuple(b.quick.split()) if args.quick else (), folder) for b in chosen]
    ended = datetime.now(UTC)
    run.update(
        ended=f"{ended:%Y-%m-%d %H:%M}",
        minutes=(ended - started).total_seconds() / 60,
        load_end=load_average(),
    )
    (folder / "run.json").write_text(json.dumps(run))
    text = render(run, outcomes)
    Path(args.out).write_text(text)
    summary = text.split("## Summary", 1)[1].split("## Each benchmark's output", 1)[0]
    print(f"\n{run['started']} to {run['ended']} UTC, load {run['load_end']} at end")
    print(summary.strip())
    print(f"\nwrote {args.out}")
    failed = [o.name for o in outcomes if o.exit_code is None or not o.records]
    if failed:
        print(f"benchmarks that failed or recorded nothing: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
