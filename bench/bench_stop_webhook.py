"""The STOP webhook's latency at 200 texts/s, next to a bare Django view on the same server.

    make bench-stop
    (= .venv/bin/python -m loyaltysms.embedded run -- python bench/bench_stop_webhook.py;
    with DATABASE_URL / REDIS_URL set, the servers they name are used instead)

Goal (issue 4): p99 < 25 ms for POST /webhooks/twilio/inbound with "STOP" at 200 requests/s.
A brand on its sandbox sender has many subscribed numbers (each a loyalty member with the same
phone, each with its import consent row); every request is a different number texting STOP,
signed with the sender's token like Twilio signs it, with its own MessageSid. The baseline is
bench/bare-twiml: the same gunicorn, middleware and form, answering the constant TwiML. Both
are paced open-loop (latency counts from when a request was due, so a queue can't hide) and
alternate in rounds, so drift on a shared machine hits both. For reading a miss, the same two
endpoints are also measured nearly idle (10 req/s: one request's own latency) and closed-loop
(their capacity here), and `--profile N` shows where a STOP's time goes, in-process. Afterwards
every number that sent STOP must be unsubscribed with exactly one opt-out consent row and one
confirmation queued.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

DB_NAME = f"loyaltysms_bench_stop_{os.getpid()}"
INBOUND = "/webhooks/twilio/inbound"
BARE = "/bench/bare-twiml"
# Several US area codes, so numbers spread over states and zones as a real list does.
AREA_CODES = ("212", "415", "312", "713", "305", "206", "617", "404")
FORM = "application/x-www-form-urlencoded"
SAVEPOINT_ID = re.compile(r'"s\d+_x\d+"')
TABLE = harness.LatencyTable(38, 7, 9, errors_label="non-2xx", rate=True)


def phone(i: int) -> str:
    return f"+1{AREA_CODES[i % len(AREA_CODES)]}555{i // len(AREA_CODES):04d}"


def seed_subscribers(tenant, count: int) -> None:
    """Subscribed numbers, each a member, each with its consent evidence, in bulk.

    subscriber_opt_in() (which the CSV import also calls per row) took ~15 ms a number here,
    several minutes for a realistic list; bulk_create writes the same rows with the same
    values (status, place from the number, member link, one `imported` consent row).
    """
    from django.db import transaction
    from django.utils import timezone

    from loyaltysms.tenancy.context import tenant_scope
    from messaging.compliance import place_of
    from messaging.models import ConsentAction, ConsentRecord, ConsentSource, Subscriber
    from messaging.services.setup import messaging_settings_get
    from programs.models import Member, SmsStatus

    then = timezone.now() - timedelta(days=30)
    settings = messaging_settings_get(tenant)
    with tenant_scope(tenant), transaction.atomic():
        members = Member.objects.bulk_create(
            Member(
                tenant=tenant,
                external_id=f"m{i}",
                phone=phone(i),
                enrolled_at=then,
                last_activity_at=then,
                sms_status=SmsStatus.SUBSCRIBED,
            )
            for i in range(count)
        )
        # The place depends only on the number's prefix (+1 NPA-NXX here): look it up once.
        places = {}
        subscribers = []
        for i, member in enumerate(members):
            prefix = phone(i)[:8]
            if prefix not in places:
                places[prefix] = place_of(phone(i))
            place = places[prefix]
            subscribers.append(
                Subscriber(
                    tenant=tenant,
                    phone=phone(i),
                    member=member,
                    status="subscribed",
                    source=ConsentSource.IMPORT,
                    timezone=place.zones[0] if len(place.zones) == 1 else "",
                    timezone_candidates=list(place.zones) if len(place.zones) > 1 else [],
                    region=place.region,
                    country=place.country,
                    subscribed_at=then,
                )
            )
        Subscriber.objects.bulk_create(subscribers, batch_size=2000)
        ConsentRecord.objects.bulk_create(
            (
                ConsentRecord(
                    tenant=tenant,
                    subscriber=subscriber,
                    action=ConsentAction.IMPORTED,
                    source=ConsentSource.IMPORT,
                    disclosure_text=settings.disclosure_text,
                    evidence={"consented_at": then.isoformat(), "original_source": "bench"},
                    created_at=then,
                )
                for subscriber in subscribers
            ),
            batch_size=2000,
        )


def stop_requests(sender, token: str, url: str, first: int, count: int) -> list[tuple]:
    """Signed STOP texts from numbers first..first+count, built before the clock starts so
    the load generator only writes bytes. The fields are those Twilio posts for an SMS."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(token)
    requests = []
    for i in range(first, first + count):
        sid = f"SM{i:032x}"
        params = {
            "ToCountry": "US",
            "ToState": "",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": "STOP",
            "FromCountry": "US",
            "To": sender.phone_number,
            "ToZip": "",
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": sender.account_sid,
            "From": phone(i),
            "ApiVersion": "2010-04-01",
        }
        headers = {
            "Content-Type": FORM,
            "X-Twilio-Signature": validator.compute_signature(url, params),
        }
        requests.append((urlencode(params).encode(), headers))
    return requests


class CpuMeter:
    """CPU seconds of this process (the load generator), of the server's processes, of the
    PostgreSQL backends serving the benchmark's database, and of the whole machine, over the
    measured phases only."""

    def __init__(self):
        self.client = self.server = self.database = self.busy = self.wall = 0.0

    @staticmethod
    def _backends() -> dict[int, float]:
        """CPU so far of each backend connected to our database ("postgres: user db …"). A
        backend that exits within a phase (a connection past its max age) is not counted:
        the figure is a lower bound."""
        found = {}
        for process in psutil.process_iter(["cmdline"]):
            cmdline = process.info["cmdline"] or []
            if cmdline and cmdline[0].startswith("postgres:") and DB_NAME in cmdline[0]:
                try:
                    times = process.cpu_times()
                    found[process.pid] = times.user + times.system
                except psutil.NoSuchProcess:
                    pass
        return found

    def __enter__(self):
        self._start = (
            time.process_time(),
            harness.server_cpu(),
            self._backends(),
            psutil.cpu_times(),
            time.monotonic(),
        )
        return self

    def __exit__(self, *exc_info):
        client, server, backends, machine, wall = self._start
        now = psutil.cpu_times()
        self.client += time.process_time() - client
        self.server += harness.server_cpu() - server
        self.database += sum(cpu - backends.get(pid, 0.0) for pid, cpu in self._backends().items())
        self.busy += harness.busy_seconds(now) - harness.busy_seconds(machine)
        self.wall += time.monotonic() - wall


def drop_wakeups(redis_url: str, pids: set[int]) -> int:
    """Remove the dispatcher wake-ups our gunicorn workers queued (one per STOP: its
    confirmation text); no worker runs here, and they must not wake someone else's later.
    Only messages whose origin is one of our worker pids are touched."""
    import redis

    from loyaltysms.queues import Queue

    client = redis.Redis.from_url(redis_url)
    host = socket.gethostname()  # Celery's origin is gen<pid>@<hostname>
    ours = {f"gen{pid}@{host}" for pid in pids}
    dropped = 0
    for raw in client.lrange(Queue.DISPATCH.value, 0, -1):
        try:
            origin = json.loads(raw)["headers"].get("origin")
        except (ValueError, KeyError, AttributeError):
            continue
        if origin in ours:
            dropped += client.lrem(Queue.DISPATCH.value, 1, raw)
    return dropped


def verify(tenant, numbers: list[str]) -> list[str]:
    """What is wrong afterwards (empty: every STOP was handled exactly once)."""
    from django.db.models import Count, Q

    from loyaltysms.tenancy.context import tenant_scope
    from messaging.models import ConsentRecord, InboundMessage, OutboundMessage, Subscriber

    problems = []
    with tenant_scope(tenant):
        stopped = Subscriber.objects.filter(phone__in=numbers)
        statuses = dict(stopped.values_list("status").annotate(n=Count("id")))
        if statuses != {"unsubscribed": len(numbers)}:
            problems.append(f"statuses of the {len(numbers)} numbers: {statuses}")
        consent = (
            ConsentRecord.objects.filter(subscriber__in=stopped, action="opt_out")
            .values("subscriber")
            .annotate(n=Count("id"))
        )
        wrong = sum(1 for row in consent if row["n"] != 1) + len(numbers) - len(consent)
        if wrong:
            problems.append(f"{wrong} numbers without exactly one opt-out consent row")
        texts = (
            OutboundMessage.objects.filter(subscriber__in=stopped, source="opt_out")
            .values("subscriber")
            .annotate(n=Count("id"), queued=Count("id", filter=Q(status="queued")))
        )
        wrong = sum(1 for r in texts if r["n"] != 1 or r["queued"] != 1)
        wrong += len(numbers) - len(texts)
        if wrong:
            problems.append(f"{wrong} numbers without exactly one confirmation queued")
        inbound = InboundMessage.objects.filter(subscriber__in=stopped, kind="opt_out").count()
        if inbound != len(numbers):
            problems.append(f"{inbound} STOP texts in the inbox for {len(numbers)} numbers")
        others = Subscriber.objects.exclude(phone__in=numbers).exclude(status="subscribed")
        if others.exists():
            problems.append(f"{others.count()} numbers that sent nothing changed status")
    return problems


# The product functions a STOP runs through, for the profile's breakdown (file, function):
# the one-statement opt-out, then what the general path (a STOP from a number unsubscribed
# already, any other text) would show.
STOP_PATH = (
    ("messaging/webhooks.py", "inbound"),
    ("messaging/webhooks.py", "sender_for_inbound"),
    ("messaging/webhooks.py", "signature_valid"),
    ("messaging/services/inbound.py", "inbound_receive"),
    ("messaging/services/setup.py", "messaging_settings_get"),
    ("messaging/services/inbound.py", "opt_out_receive"),
    ("messaging/compliance.py", "place_of"),
    ("messaging/services/subscribers.py", "opt_out_confirmation"),
    ("messaging/services/setup.py", "sender_default"),
    ("messaging/services/inbound.py", "_opt_out_by_text"),
    ("messaging/services/outbound.py", "_wake_dispatcher"),
    ("messaging/services/outbound.py", "_publish_wake"),
    ("messaging/services/inbound.py", "inbound_receive_general"),
    ("messaging/services/subscribers.py", "subscriber_get_or_create"),
    ("loyaltysms/db.py", "insert_unless_exists"),
    ("messaging/services/subscribers.py", "subscriber_opt_out"),
    ("messaging/services/outbound.py", "message_create"),
    ("messaging/services/inbound.py", "_to_inbox"),
)


def profile_in_process(sender, token: str, first: int, count: int, top: int) -> None:
    """STOP requests through Django in this process (the test client, no network): wall and
    CPU time and SQL statements per request, then cProfile's view of where the time goes."""
    import cProfile
    import pstats
    from collections import Counter

    from django.conf import settings
    from django.db import connection
    from django.test import Client

    base = settings.PUBLIC_BASE_URL or "http://127.0.0.1"
    requests = iter(stop_requests(sender, token, base + INBOUND, first, count))
    client = Client(HTTP_HOST="127.0.0.1")

    def post(n: int, path: str = INBOUND, requests=requests) -> None:
        for _ in range(n):
            body, headers = next(requests)
            response = client.generic("POST", path, body, content_type=FORM, headers=headers)
            assert response.status_code == 200, response.content

    statements: Counter[str] = Counter()
    in_db = [0.0]

    def timed(execute, sql, params, many, context):
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            in_db[0] += time.perf_counter() - began
            statements[" ".join(SAVEPOINT_ID.sub("", sql).split()[:4])[:70]] += 1

    post(20)  # warm: imports, connections, the number's area data
    plain = (count - 20) // 3
    began, cpu = time.perf_counter(), time.process_time()
    with connection.execute_wrapper(timed):
        post(plain)
    wall = (time.perf_counter() - began) / plain * 1000
    cpu = (time.process_time() - cpu) / plain * 1000
    # The bare view the same way: what any request costs here, for the STOP's own share.
    bare = iter(stop_requests(sender, token, base + BARE, first + count, plain + 20))
    post(20, BARE, bare)
    bare_cpu = time.process_time()
    post(plain, BARE, bare)
    bare_cpu = (time.process_time() - bare_cpu) / plain * 1000
    profiled = count - 20 - plain
    profiler = cProfile.Profile()
    profiler.enable()
    post(profiled)
    profiler.disable()

    print(f"\nIn-process, {plain} STOPs without a profiler: {wall:.1f} ms wall, {cpu:.1f} ms CPU")
    print(
        f"(this process; the bare view: {bare_cpu:.1f} ms) and {in_db[0] / plain * 1000:.1f} ms "
        f"waiting on SQL a request; {sum(statements.values()) / plain:.0f} statements a request:"
    )
    for sql, n in statements.most_common():
        print(f"  {n / plain:4.1f}  {sql}")
    stats = pstats.Stats(profiler)
    print(f"\nUnder cProfile ({profiled} STOPs; times inflated by the profiler), per request:")
    print(f"  {'cumulative':>10}  {'calls':>5}  function")
    for suffix, name in STOP_PATH:
        for (path, _, function), (_, calls, _, cumulative, _) in stats.stats.items():
            if function == name and path.endswith(suffix):
                print(
                    f"  {cumulative / profiled * 1000:7.2f} ms  {calls / profiled:5.1f}  "
                    f"{suffix.removesuffix('.py').replace('/', '.')}.{name}"
                )
    by_package: Counter[str] = Counter()
    for (path, _, function), (_, _, own, _, _) in stats.stats.items():
        if path == "~":
            key = function
        elif "site-packages/" in path:
            key = path.split("site-packages/")[1].split("/")[0]
        elif path.startswith(str(harness.ROOT)):
            key = "project: " + path[len(str(harness.ROOT)) + 1 :].split("/")[0]
        else:
            key = "stdlib: " + Path(path).name
        by_package[key] += own
    total = sum(by_package.values())
    print("  own time by package:")
    for key, own in by_package.most_common(top):
        print(f"  {own / profiled * 1000:7.2f} ms  {own / total:5.1%}  {key}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s offered")
    parser.add_argument("--seconds", type=float, default=10.0, help="per round and endpoint")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds per endpoint")
    parser.add_argument("--clients", type=int, default=32, help="load-generator threads")
    parser.add_argument("--subscribers", type=int, default=20000)
    parser.add_argument("--low-rate", type=float, default=10.0, help="the unloaded reference")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="then profile N STOPs in-process"
    )
    args = parser.parse_args()

    harness.setup_django(DB_NAME)
    from django.conf import settings
    from django.db import connection

    from messaging.crypto import decrypt
    from messaging.services.setup import sender_default

    load = os.getloadavg()
    with harness.bench_database(DB_NAME):
        tenant = harness.create_brand("bench", "Bench", "bench@bench.test").tenant
        sender = sender_default(tenant)  # the sandbox sender a new brand gets
        token = decrypt(sender.auth_token_encrypted)
        began = time.monotonic()
        seed_subscribers(tenant, args.subscribers)
        seeded = time.monotonic() - began
        connection.close()
        # Numbers args.subscribers - profile.. are kept for the in-process profile.
        usable = args.subscribers - args.profile

        with harness.web_server(DB_NAME) as port:
            # The URL Twilio would have signed: what webhooks.public_url() rebuilds.
            base = settings.PUBLIC_BASE_URL or f"http://127.0.0.1:{port}"
            stop = stop_requests(sender, token, base + INBOUND, 0, usable)
            # Numbers no subscriber has, for the bare view (it writes nothing).
            bare = stop_requests(sender, token, base + BARE, args.subscribers, 5000)
            workers = {p.pid for p in psutil.Process().children(recursive=True)}
            sent = 0  # STOP numbers used so far; every request takes the next one

            def real(i):
                if i >= usable:
                    raise RuntimeError("out of subscribers: raise --subscribers")
                return ("POST", INBOUND, *stop[i])

            def baseline(i):
                return ("POST", BARE, *bare[i % len(bare)])

            def run(make, rate, seconds, clients=args.clients):
                nonlocal sent
                outcome = harness.paced(
                    port, make, rate=rate, seconds=seconds, clients=clients, start=sent
                )
                if make is real:
                    sent += outcome.result.requests
                return outcome

            run(baseline, args.rate, args.warmup)
            run(real, args.rate, args.warmup)
            results = {"bare": [], "stop": []}
            cpu = {"bare": CpuMeter(), "stop": CpuMeter()}
            unsent = 0
            for _ in range(args.rounds):
                for name, make in (("bare", baseline), ("stop", real)):
                    with cpu[name]:
                        outcome = run(make, args.rate, args.seconds)
                    results[name].append(outcome.result)
                    unsent += outcome.unsent
            # The same endpoints nearly idle: the latency of one request on its own.
            low = {
                name: run(make, args.low_rate, args.seconds, clients=4).result
                for name, make in (("bare", baseline), ("stop", real))
            }
            # Closed loop, 8 clients: what each endpoint can do at most on this machine.
            capacity = {}
            for name, make in (("bare", baseline), ("stop", real)):
                result = harness.closed_loop(port, make, clients=8, seconds=5, start=sent)
                capacity[name] = result.rate
                if make is real:
                    sent += result.requests
        problems = verify(tenant, [phone(i) for i in range(sent)])
        if args.profile:
            profile_in_process(sender, token, usable, args.profile, top=12)
        dropped = drop_wakeups(settings.REDIS_URL, workers | {os.getpid()})

    bare_all, stop_all = harness.merged(results["bare"]), harness.merged(results["stop"])
    end_load = os.getloadavg()
    print(
        f"\nSTOP webhook vs bare view — {time.strftime('%Y-%m-%d %H:%M')}, nproc "
        f"{os.cpu_count()}, load average {load[0]:.2f} at start, {end_load[0]:.2f} at end"
    )
    print(
        f"{args.subscribers:,} subscribed numbers (bulk-created in {seeded:.1f} s); each STOP "
        f"from a new number; open loop, {args.clients} client threads"
    )
    print(TABLE.header())
    print(
        f"at {args.rate:.0f} req/s offered, {args.rounds} rounds x {args.seconds:.0f} s each, "
        "alternating (ms):"
    )
    print(TABLE.row(f"  bare view  {BARE}", bare_all))
    print(TABLE.row(f"  STOP       {INBOUND}", stop_all))
    ratio = "".join(
        f"{stop_all.percentile(p) / bare_all.percentile(p):{w}.1f}x"
        for p, w in ((50, 6), (95, 8), (99, 8))
    )
    print(f"{'  ratio STOP/bare':<38}{ratio}")
    for name in ("bare", "stop"):
        rounds = ", ".join(f"{r.percentile(99):.1f}" for r in results[name])
        print(f"    p99 per round, {name:<5} {rounds} ms")
    if unsent:
        print(
            f"  the server fell >10 s behind: {unsent:,} requests were never offered "
            "(the p99 above is a lower bound)"
        )
    print(f"at {args.low_rate:.0f} req/s offered, {args.seconds:.0f} s (nearly idle, ms):")
    print(TABLE.row(f"  bare view  {BARE}", low["bare"]))
    print(TABLE.row(f"  STOP       {INBOUND}", low["stop"]))
    print(
        f"capacity, closed loop, 8 clients, 5 s: bare {capacity['bare']:.0f} req/s, "
        f"STOP {capacity['stop']:.0f} req/s"
    )
    verdict = "met" if stop_all.percentile(99) < 25 and not unsent else "MISSED"
    print(f"goal: STOP p99 < 25 ms at {args.rate:.0f} req/s → {verdict}")
    stop_p99, bare_p99 = stop_all.percentile(99), bare_all.percentile(99)
    harness.record(
        "STOP webhook",
        f"STOP p99 at {args.rate:.0f} req/s"
        + (f" ({unsent:,} never offered: a lower bound)" if unsent else ""),
        f"{stop_p99:.1f} ms",
        baseline=f"bare view {bare_p99:.1f} ms",
        ratio=f"{stop_p99 / bare_p99:.1f}x",
        goal="p99 < 25 ms",
        met=verdict == "met",
    )
    print(f"CPU while paced at {args.rate:.0f} req/s, share of the {os.cpu_count()} cores:")
    for name, result in (("bare", bare_all), ("STOP", stop_all)):
        meter = cpu[name.lower()]
        share = meter.wall * (os.cpu_count() or 1)
        print(
            f"  {name:<5} load generator {meter.client / share:5.1%}   gunicorn "
            f"{meter.server / share:5.1%} ({meter.server / result.requests * 1000:.1f} ms a "
            f"request)   PostgreSQL {meter.database / share:5.1%} "
            f"({meter.database / result.requests * 1000:.1f} ms)   whole machine "
            f"{meter.busy / share:5.1%}"
        )
    found = "; ".join(problems) or "each unsubscribed, 1 opt-out consent row, 1 reply queued"
    print(f"check: {sent:,} numbers sent STOP → {found}")
    print(f"({dropped:,} dispatcher wake-ups our processes queued were removed from the broker)")
    return 1 if problems or bare_all.errors or stop_all.errors else 0


if __name__ == "__main__":
    sys.exit(main())
