"""The dispatcher's achieved send rate at 3, 100 and 1,000 MPS against a local fake Twilio.

    make bench-dispatch
    (= .venv/bin/python -m loyaltysms.embedded run -- python bench/bench_dispatch_rate.py;
    with DATABASE_URL / REDIS_URL set, the servers they name are used instead)

Goal (issue 4): at each configured MPS the carrier sees the configured rate (±2 % over the
steady part) and never more than MPS texts in any second (calendar seconds and any sliding
1-second window). Each rate gets a brand connected to Twilio with sender_connect_twilio(mps=N)
and ~20-30 s of transactional texts (exempt from quiet hours), sent by the real dispatcher
(messaging.services.dispatch.dispatch_due) in worker processes that take turns on a sender
by its Redis lease, as Celery's dispatch workers would. The carrier is tests/fake_twilio.py's
FakeTwilio in a process of its own; times are the fake's own receipt times. The baseline is
that fake's capacity with a lean keep-alive client, measured in the same run: if the
dispatcher can't reach a rate, it shows whether the carrier or the dispatcher is the limit.

The script is also its own helper processes: `--serve-fake` (the fake carrier, which reports
its receipt times on request; `python -m tests.fake_twilio` serves the same class but can't
hand them out) and `--dispatcher` (one dispatch worker).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

DB_NAME = f"loyaltysms_bench_dispatch_{os.getpid()}"
ACCOUNT = "AC" + "b3" * 16
TOKEN = "5e" * 16
TEMPLATE = "{brand}: your reward is ready. Show code RWD-4242 at checkout before Sunday."
STEADY_TRIM = 2.0  # seconds left out at each end: processes starting and finishing
AREA_CODES = ("212", "415", "312", "713", "305", "206", "617", "404")


def phone(i: int) -> str:
    """Numbers from 555-2000 up: clear of 555-01xx, where the phone simulator's numbers are
    (the gate suppresses those for a real carrier, so they would never be sent)."""
    return f"+1{AREA_CODES[i % len(AREA_CODES)]}555{2000 + i // len(AREA_CODES):04d}"


# --- helper process: the fake carrier --------------------------------------------------------


def serve_fake(accounts: list[str], port: int) -> None:
    """FakeTwilio (as `python -m tests.fake_twilio` serves it), plus a line protocol on stdin
    so the benchmark can read the fake's receipt times: `times` → one JSON line, `reset`."""
    from tests.fake_twilio import FakeTwilio

    # Its handler threads hand the interpreter lock on sooner: a request's receipt time is
    # taken by a thread that first has to get it (Python's default switch interval is 5 ms).
    sys.setswitchinterval(0.0005)
    fake = FakeTwilio(port=port, reuse_port=True)
    for account in accounts:
        sid, _, token = account.partition(":")
        fake.add_account(sid, token)
    print(fake.base_url, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "times":
            creates = [
                (r.received_monotonic, r.received_at.timestamp(), r.response_status)
                for r in fake.requests
                if r.method == "POST" and r.path.endswith("/Messages.json")
            ]
            answer = {
                "creates": creates,
                "violations": len(fake.schema_violations()),
                "connections": fake.connections_opened,
            }
            print(json.dumps(answer), flush=True)
        elif command == "reset":
            fake.reset()
            print("ok", flush=True)
    fake.stop()


def _raise_priority() -> None:
    with contextlib.suppress(PermissionError):
        os.nice(-10)


# Processes serving the fake on one port (SO_REUSEPORT): a carrier's front end is many
# machines; one Python process with a thread per connection would add its own queueing.
FAKE_PROCESSES = 2


class FakeCarrier:
    """The fake in processes of its own, so it doesn't share a GIL with anything measured.
    Receipt times are time.monotonic(), one clock for every process on the machine."""

    def __init__(self, processes: int = FAKE_PROCESSES):
        self.processes, port = [], 0
        for _ in range(processes):
            process = subprocess.Popen(  # noqa: S603 - this script, fixed arguments
                [
                    sys.executable,
                    __file__,
                    "--serve-fake",
                    "--account",
                    f"{ACCOUNT}:{TOKEN}",
                    "--port",
                    str(port),
                ],
                cwd=harness.ROOT,
                # A real carrier has machines of its own; here it shares two cores with us, so
                # it goes first when it has work (where the OS allows raising a priority).
                preexec_fn=_raise_priority,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.processes.append(process)
            self.base_url = process.stdout.readline().strip()
            port = int(urlsplit(self.base_url).port)
        self.ps = [psutil.Process(p.pid) for p in self.processes]

    def _ask(self, command: str) -> list[str]:
        for process in self.processes:
            process.stdin.write(command + "\n")
            process.stdin.flush()
        return [process.stdout.readline() for process in self.processes]

    def times(self) -> dict:
        answers = [json.loads(line) for line in self._ask("times")]
        return {
            "creates": [c for a in answers for c in a["creates"]],
            "violations": sum(a["violations"] for a in answers),
            "connections": sum(a["connections"] for a in answers),
        }

    def reset(self) -> None:
        self._ask("reset")

    def cpu(self) -> float:
        return sum(t.user + t.system for t in (p.cpu_times() for p in self.ps))

    def stop(self) -> None:
        for process in self.processes:
            process.stdin.close()
        for process in self.processes:
            process.wait(timeout=30)


# --- helper process: one dispatcher ------------------------------------------------------------


def profile_all_threads():
    """cProfile per thread (the dispatcher sends from threads it starts per batch; a profiler
    only sees its own thread), on thread CPU time so waiting is not counted as cost."""
    import cProfile

    profiles, lock = [], threading.Lock()
    original = threading.Thread.run

    def run(self):
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(profile)
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    threading.Thread.run = run
    main = cProfile.Profile(time.thread_time)
    profiles.append(main)
    main.enable()
    return main, profiles


def run_dispatcher(db_name: str, concurrency: int, profile_to: str | None) -> None:
    """One dispatch worker, started on a signal so all begin together. It runs what a Celery
    worker on the dispatch queue would: messaging.tasks.dispatch_due's call, again at once
    when it stopped at its time limit (the task re-queues itself), and again at beat's next
    tick while texts are still due (another worker held them when it looked)."""
    harness.setup_django(db_name)
    from django.conf import settings

    import messaging.gateways.twilio  # noqa: F401 - imported before the clock starts
    from messaging import ratelimit
    from messaging.models import DUE_STATUSES, OutboundMessage
    from messaging.services.dispatch import DispatchReport, dispatch_due
    from messaging.tasks import DISPATCH_SECONDS

    # When each send left our pacer, to compare with the fake's receipt times.
    fired: list[float] = []
    until = ratelimit.Pacer.until

    async def recorded(self, slot, prepare=None):
        await until(self, slot, prepare)
        fired.append(time.time())

    ratelimit.Pacer.until = recorded

    from messaging.gateways.twilio import TwilioGateway

    # How long the carrier took to answer each request, as the dispatcher saw it.
    answers: list[float] = []
    send_async = TwilioGateway.send_async

    async def timed(self, message):
        began = time.monotonic()
        try:
            return await send_async(self, message)
        finally:
            answers.append(time.monotonic() - began)

    TwilioGateway.send_async = timed
    beat = settings.CELERY_BEAT_SCHEDULE["dispatch-due-texts"]["schedule"]
    print("ready", flush=True)
    sys.stdin.readline()
    if profile_to:
        main, profiles = profile_all_threads()
    began, cpu = time.monotonic(), time.process_time()
    total, runs, empty = DispatchReport(), 0, 0
    while True:
        report = dispatch_due(concurrency=concurrency, max_seconds=DISPATCH_SECONDS)
        total.add(report)
        runs += 1
        empty += report.claimed == 0
        if report.unfinished:
            continue
        # WARNING: all tenants; the benchmark's own database holds only its own texts.
        if not OutboundMessage.objects.unscoped().filter(status__in=DUE_STATUSES).exists():
            break
        time.sleep(beat)
    wall, cpu = time.monotonic() - began, time.process_time() - cpu
    if profile_to:
        import pstats

        main.disable()
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            stats.add(profile)
        stats.dump_stats(profile_to)
    answer = {"report": vars(total), "cpu": cpu, "wall": wall, "runs": runs, "empty": empty}
    answer["fired"] = fired
    answer["answers"] = sorted(answers)
    print(json.dumps(answer), flush=True)


def start_dispatchers(count: int, concurrency: int, base_url: str, profile_to: str | None):
    env = {
        **os.environ,
        # Settings read it at startup: the workers' Twilio SDK talks to the fake.
        "TWILIO_API_BASE_URL": base_url,
        "BENCH_DB_NAME": DB_NAME,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
    }
    processes = []
    for n in range(count):
        command = [sys.executable, __file__, "--dispatcher", "--db", DB_NAME]
        command += ["--concurrency", str(concurrency)]
        if profile_to and n == 0:
            command += ["--profile-to", profile_to]
        processes.append(
            subprocess.Popen(  # noqa: S603 - this script, fixed arguments
                command,
                cwd=harness.ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for process in processes:
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("a dispatcher did not start")
    for process in processes:  # go
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        for line in process.stdout:
            if line.startswith('{"report"'):
                results.append(json.loads(line))
        if process.wait(timeout=60) != 0:
            raise RuntimeError("a dispatcher failed")
    return results


# --- the baseline: the fake's own capacity --------------------------------------------------


def carrier_capacity(base_url: str, *, clients: int, seconds: float) -> float:
    """Creates per second the fake answers to a lean client: raw keep-alive sockets sending
    a prepared request of the dispatcher's shape (To, From, Body, StatusCallback)."""
    address = urlsplit(base_url)
    body = urlencode(
        {
            "To": "+12125550100",
            "From": "+14155550100",
            "Body": "Bench: your reward is ready. Show code RWD-4242 at checkout.",
            "StatusCallback": "http://localhost:8000/webhooks/twilio/status?m=1",
        }
    ).encode()
    auth = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    request = (
        f"POST /2010-04-01/Accounts/{ACCOUNT}/Messages.json HTTP/1.1\r\n"
        f"Host: {address.netloc}\r\nAuthorization: Basic {auth}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    stop_at = time.monotonic() + seconds
    counts = [0] * clients

    def client(n: int) -> None:
        sock = socket.create_connection((address.hostname, address.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        while time.monotonic() < stop_at:
            sock.sendall(request)
            while b"\r\n\r\n" not in buffer:
                buffer += sock.recv(65536)
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buffer) < length:
                buffer += sock.recv(65536)
            buffer = buffer[length:]
            if not head.startswith(b"HTTP/1.1 201"):
                raise RuntimeError(f"the fake answered {head[:40]!r}")
            counts[n] += 1
        sock.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - began)


# --- the data -----------------------------------------------------------------------------------


def queue_texts(brand: int, rate: int, count: int, first_number: int) -> tuple:
    """Brand number `brand`, on Twilio at `rate` MPS, with `count` subscribed numbers and
    one transactional text queued to each.

    message_create() took ~9 ms a text here (20,000 texts: minutes), so the rows are written
    with bulk_create, with the body the product composes (outbound.compose) and the fields
    message_create sets. Subscribers likewise (subscriber_opt_in: ~15 ms each)."""
    from django.db import transaction
    from django.utils import timezone

    from loyaltysms.services import tenant_create
    from loyaltysms.tenancy.context import tenant_scope
    from messaging.models import MessageKind, MessageStatus, OutboundMessage, Subscriber
    from messaging.services.outbound import compose
    from messaging.services.setup import brand_name, messaging_settings_get, sender_connect_twilio

    tenant = tenant_create(
        slug=f"brand-{brand}",
        name=f"Brand {brand}",
        owner_email=f"brand{brand}@bench.test",
        owner_password="bench-password-123",  # noqa: S106 - a throwaway database
    ).tenant
    sender = sender_connect_twilio(
        tenant=tenant,
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        from_number=f"+1415555{100 + brand:04d}",
        mps=rate,
    )
    settings = messaging_settings_get(tenant)
    rendered = compose(
        TEMPLATE,
        values={"brand": brand_name(tenant, settings)},
        kind=MessageKind.TRANSACTIONAL,
        settings=settings,
    )
    now = timezone.now()
    with tenant_scope(tenant), transaction.atomic():
        subscribers = Subscriber.objects.bulk_create(
            (
                Subscriber(
                    tenant=tenant,
                    phone=phone(first_number + n),
                    status="subscribed",
                    source="import",
                    country="US",
                    subscribed_at=now - timedelta(days=30),
                )
                for n in range(count)
            ),
            batch_size=2000,
        )
        OutboundMessage.objects.bulk_create(
            (
                OutboundMessage(
                    tenant=tenant,
                    subscriber=subscriber,
                    sender=sender,
                    to=subscriber.e164,
                    kind=MessageKind.TRANSACTIONAL,
                    source="bench",
                    dedupe_key=f"bench:{subscriber.pk}",
                    body=rendered.text,
                    encoding=rendered.info.encoding,
                    segments=rendered.info.segments,
                    price_estimate=settings.price_per_segment * rendered.info.segments,
                    status=MessageStatus.QUEUED,
                    send_after=now,
                    created_at=now,
                )
                for subscriber in subscribers
            ),
            batch_size=2000,
        )
    return tenant, sender


def statuses(tenant) -> dict:
    from django.db.models import Count

    from loyaltysms.tenancy.context import tenant_scope
    from messaging.models import OutboundMessage

    with tenant_scope(tenant):
        return dict(OutboundMessage.objects.values_list("status").annotate(n=Count("id")))


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Phase:
    rate: int
    processes: int
    texts: int
    received: int
    steady_rate: float
    whole_rate: float
    max_calendar: int
    max_sliding: int
    dispatcher_cpu: float  # seconds, all processes
    fake_cpu: float
    machine_busy: float  # share of all cores over the phase
    seconds: float
    statuses: dict
    violations: int
    connections: int
    reports: list  # each process's DispatchReport, CPU and wall seconds


def rates(times: list[float]) -> tuple[float, float]:
    """(steady rate, whole rate): arrivals per second between the first and the last
    arrival, over the run without its first and last STEADY_TRIM seconds, and over all of it.
    Measured arrival to arrival, so the count's ±1 doesn't matter at 3 MPS."""
    whole = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    steady = [t for t in times if times[0] + STEADY_TRIM <= t <= times[-1] - STEADY_TRIM]
    if len(steady) < 2:
        return whole, whole
    return (len(steady) - 1) / (steady[-1] - steady[0]), whole


def max_sliding(times: list[float]) -> int:
    """The most arrivals in any half-open 1-second window [t, t + 1)."""
    return max((bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def run_phase(
    fake: FakeCarrier,
    brand: int,
    rate: int,
    seconds: float,
    processes: int,
    concurrency: int,
    first_number: int,
    profile_to: str | None = None,
) -> Phase:
    from django.db import connection

    texts = max(int(rate * seconds), 1)
    tenant, _ = queue_texts(brand, rate, texts, first_number)
    connection.close()
    fake.reset()
    connections = fake.times()["connections"]  # the fake counts from its start
    fake_cpu, machine = fake.cpu(), psutil.cpu_times()
    began = time.monotonic()
    reports = start_dispatchers(processes, concurrency, fake.base_url, profile_to)
    elapsed = time.monotonic() - began
    now = psutil.cpu_times()
    busy = (sum(now) - now.idle - now.iowait) - (sum(machine) - machine.idle - machine.iowait)
    seen = fake.times()
    ok = [c for c in seen["creates"] if c[2] == 201]
    monotonic = sorted(c[0] for c in ok)
    calendar = Counter(int(c[1]) for c in ok)
    steady, whole = rates(monotonic)
    return Phase(
        rate=rate,
        processes=processes,
        texts=texts,
        received=len(ok),
        steady_rate=steady,
        whole_rate=whole,
        max_calendar=max(calendar.values(), default=0),
        max_sliding=max_sliding(monotonic),
        dispatcher_cpu=sum(r["cpu"] for r in reports),
        fake_cpu=fake.cpu() - fake_cpu,
        machine_busy=busy / (elapsed * (os.cpu_count() or 1)),
        seconds=elapsed,
        statuses=statuses(tenant),
        violations=seen["violations"],
        connections=seen["connections"] - connections,
        reports=reports,
    )


# The dispatcher's own steps and the libraries under them, for the profile's breakdown.
SEND_PATH = (
    ("messaging/services/dispatch.py", "_claim"),
    ("messaging/services/dispatch.py", "_gate"),
    ("messaging/services/dispatch.py", "_send_batch"),
    ("messaging/services/dispatch.py", "_paced"),
    ("messaging/services/dispatch.py", "_record_outcomes"),
    ("messaging/services/dispatch.py", "status_callback_url"),
    ("messaging/ratelimit.py", "until"),
    ("messaging/gateways/twilio.py", "send_async"),
    ("twilio/rest/api/v2010/account/message/__init__.py", "create_async"),
    ("messaging/gateways/twilio.py", "request"),
    ("aiohttp/client.py", "_request"),
    ("django/db/backends/base/base.py", "connect"),
)


def print_profile(path: str, sent: int, top: int) -> None:
    import pstats

    stats = pstats.Stats(path)
    total = sum(own for _, _, own, _, _ in stats.stats.values())
    print(f"  CPU by step, cumulative ({total / sent * 1000:.2f} ms a text under the profiler):")
    for suffix, name in SEND_PATH:
        for (file, _, function), (_, calls, _, cumulative, _) in stats.stats.items():
            if function == name and file.endswith(suffix):
                short = suffix.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
                print(
                    f"    {cumulative / total:6.1%}  {cumulative / sent * 1000:7.3f} ms  "
                    f"{calls / sent:5.2f} calls  {short}.{name}"
                )
    by_package: Counter[str] = Counter()
    for (file, _, function), (_, _, own, _, _) in stats.stats.items():
        if file == "~":
            key = function
        elif "site-packages/" in file:
            key = file.split("site-packages/")[1].split("/")[0]
        elif file.startswith(str(harness.ROOT)):
            key = "project: " + file[len(str(harness.ROOT)) + 1 :].split("/")[0]
        else:
            key = "stdlib: " + Path(file).name
        by_package[key] += own
    print("  own CPU by package:")
    for key, own in by_package.most_common(top):
        print(f"    {own / total:6.1%}  {own / sent * 1000:7.3f} ms  {key}")
    print("  top functions by own CPU:")
    ranked = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]
    for (file, line, function), (_, calls, own, _, _) in ranked:
        where = file.split("site-packages/")[-1].replace(str(harness.ROOT) + "/", "")
        print(
            f"    {own / total:6.1%}  {own / sent * 1000:7.3f} ms  {calls / sent:7.2f} calls  "
            f"{where}:{line}({function})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="3,100,1000", help="configured MPS, comma-separated")
    parser.add_argument("--seconds", default="30,20,20", help="texts for this long, per rate")
    parser.add_argument(
        "--processes",
        default="1,1,2",
        help="dispatcher processes per rate (one serves a sender at a time, by its lease)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=0, help="threads per process (default: the task's)"
    )
    parser.add_argument(
        "--profile", type=int, default=1000, metavar="N",
        help="then profile one dispatcher process sending N texts at the last rate (0: no)",
    )  # fmt: skip
    # Helper-process modes (the benchmark starts these itself).
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--account", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--dispatcher", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake(args.account, args.port)
        return 0
    if args.dispatcher:
        run_dispatcher(args.db, args.concurrency, args.profile_to)
        return 0

    targets = [int(r) for r in args.rates.split(",")]
    durations = [float(s) for s in args.seconds.split(",")]
    process_counts = [int(p) for p in args.processes.split(",")]
    if not len(targets) == len(durations) == len(process_counts):
        parser.error("--rates, --seconds and --processes need one value per rate")

    harness.setup_django(DB_NAME)
    from django.db import connection

    from messaging.tasks import DISPATCH_CONCURRENCY

    concurrency = args.concurrency or DISPATCH_CONCURRENCY
    load = os.getloadavg()
    phases, capacity = [], []
    profile_path = f"/tmp/{DB_NAME}.prof" if args.profile else None  # noqa: S108
    with harness.bench_database(DB_NAME):
        with connection.cursor() as cursor:
            # Pacing lives in Redis under the sender's id; ids no other database hands out
            # keep a shared Redis (or a `make run` next to us) out of our buckets.
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('messaging_sender', 'id'), %s)",
                [10**12 + os.getpid() * 100],
            )
        fake = FakeCarrier()
        try:
            carrier_capacity(fake.base_url, clients=16, seconds=1)  # warm
            capacity.append(carrier_capacity(fake.base_url, clients=16, seconds=5))
            numbers = 0  # every text goes to a number of its own
            for n, (rate, seconds, processes) in enumerate(
                zip(targets, durations, process_counts, strict=True)
            ):
                phases.append(run_phase(fake, n, rate, seconds, processes, concurrency, numbers))
                numbers += phases[-1].texts
            fake.reset()
            capacity.append(carrier_capacity(fake.base_url, clients=16, seconds=5))
            if profile_path:
                # Apart from the measured runs (the profiler slows the process it watches),
                # and one process alone, so that it gets every text.
                profiled = run_phase(
                    fake,
                    len(targets),  # a brand of its own, so a fresh pacing bucket
                    targets[-1],
                    args.profile / targets[-1],
                    1,
                    concurrency,
                    numbers,
                    profile_to=profile_path,
                )
        finally:
            fake.stop()

    end_load = os.getloadavg()
    print(
        f"\nDispatcher pacing against the local fake Twilio — {time.strftime('%Y-%m-%d %H:%M')}, "
        f"nproc {os.cpu_count()}, load average {load[0]:.2f} at start, {end_load[0]:.2f} at end"
    )
    print(
        f"fake carrier alone ({FAKE_PROCESSES} processes; lean keep-alive client, "
        "16 connections, 5 s): "
        f"{capacity[0]:,.0f} creates/s before, {capacity[1]:,.0f} after"
    )
    print(
        f"{'configured':>10} {'workers':>8} {'texts':>6} {'at fake':>7} {'steady':>9} "
        f"{'vs conf.':>8} {'whole':>8} {'max/1 s':>7} {'max/1 s':>7} {'disp. CPU':>9} "
        f"{'fake CPU':>8} {'machine':>7}"
    )
    print(
        f"{'MPS':>10} {'procxthr':>8} {'':>6} {'':>7} {'rate/s':>9} {'':>8} {'rate/s':>8} "
        f"{'calend.':>7} {'sliding':>7} {'ms/text':>9} {'ms/text':>8} {'busy':>7}"
    )
    failed = False
    for phase in phases:
        off = phase.steady_rate / phase.rate - 1
        print(
            f"{phase.rate:>10,} {f'{phase.processes}x{concurrency}':>8} {phase.texts:>6,} "
            f"{phase.received:>7,} {phase.steady_rate:>9.2f} {off:>+8.1%} "
            f"{phase.whole_rate:>8.2f} {phase.max_calendar:>7,} {phase.max_sliding:>7,} "
            f"{phase.dispatcher_cpu / max(1, phase.received) * 1000:>9.2f} "
            f"{phase.fake_cpu / max(1, phase.received) * 1000:>8.2f} {phase.machine_busy:>7.0%}"
        )
    print("goal: steady rate within ±2 % of configured; never more than MPS in any 1 s window")
    for phase in phases:
        within = abs(phase.steady_rate / phase.rate - 1) <= 0.02
        never_over = max(phase.max_calendar, phase.max_sliding) <= phase.rate
        complete = phase.statuses == {"sent": phase.texts} and phase.received == phase.texts
        failed |= not complete or phase.violations > 0
        print(
            f"  {phase.rate:>5,} MPS: rate {'met' if within else 'MISSED'}, cap "
            f"{'met' if never_over else 'MISSED'}; {phase.seconds:.1f} s; texts {phase.statuses}"
            f"; spec violations {phase.violations}"
        )
        harness.record(
            "dispatcher pacing",
            f"{phase.rate:,} MPS: steady rate (max in any 1 s: "
            f"{max(phase.max_calendar, phase.max_sliding):,})",
            f"{phase.steady_rate:.2f}/s",
            baseline=f"configured {phase.rate:,}/s; fake carrier alone {capacity[0]:,.0f}/s",
            ratio=f"{phase.steady_rate / phase.rate:.1%}",
            goal="within ±2 %, never over MPS in 1 s",
            met=within and never_over and complete and not phase.violations,
        )
        print(
            f"{'':>13}sent per process "
            + "/".join(str(r["report"]["sent"]) for r in phase.reports)
            + "; dispatch_due runs (of which found nothing) "
            + "/".join(f"{r['runs']}({r['empty']})" for r in phase.reports)
            + f"; connections to the carrier {phase.connections}"
        )
        answers = sorted(t for r in phase.reports for t in r["answers"])
        if answers:
            p50, p99 = (answers[int(q * (len(answers) - 1))] * 1000 for q in (0.5, 0.99))
            print(
                f"{'':>13}the carrier's answers as the dispatcher waited for them: p50 "
                f"{p50:.1f} ms, p99 {p99:.1f} ms, max {answers[-1] * 1000:.0f} ms"
            )
        fired = sorted(t for r in phase.reports for t in r["fired"])
        print(
            f"{'':>13}as our pacer let them go: max {max_sliding(fired)} in any 1 s window "
            f"(the carrier's count above adds the delays between there and its handler)"
        )
    if profile_path:
        watched = profiled.reports[0]
        print(
            f"\nProfile: one dispatcher process ({concurrency} threads) at {profiled.rate:,} MPS "
            f"configured, {watched['report']['sent']:,} texts in {watched['wall']:.1f} s using "
            f"{watched['cpu']:.1f} s CPU ({profiled.steady_rate:.0f}/s steady under the "
            "profiler, which inflates CPU several-fold: read the shares, and the unprofiled "
            "ms/text above)"
        )
        print_profile(profile_path, max(1, watched["report"]["sent"]), top=15)
        os.unlink(profile_path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
