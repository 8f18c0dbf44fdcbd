"""Delivery receipts through the real status webhook, next to bulk SQL applying the same.

    make bench-callbacks
    (= .venv/bin/python -m loyaltysms.embedded run -- python bench/bench_status_callback.py;
    with DATABASE_URL / REDIS_URL set, the servers they name are used instead)

A brand connected to Twilio (sender_connect_twilio) has many texts that went out: status
`sent`, each with its carrier sid, generated in SQL (INSERT … SELECT generate_series) in a
database of its own. Each receipt is Twilio's status callback for one of them, `delivered`:
POST /webhooks/twilio/status?m=<our id> (the URL the dispatcher gives Twilio) with the fields
Twilio posts, signed with the account's token as Twilio signs, built before the clock starts.
gunicorn serves it with the project's settings; N clients send back to back (closed loop), so
the figure is the most receipts a second this machine applies.

The baseline, in the same round and on the same number of other `sent` texts: COPY of the
receipts (message id, sid, status) into a temporary table, then one UPDATE … FROM applying
them to messaging_outboundmessage (the same columns the webhook sets, the same monotonic
rule in the WHERE), in one transaction. That is the fairer "raw COPY" here: a receipt's job
is to change a text that exists, and a bare COPY into a table of its own would skip the
lookup and the row update in the indexed 60-column table that any way of applying receipts
pays. The bare COPY into a plain table is printed too, for reference. Rounds alternate the
webhook and the baseline so drift on a shared machine hits both; the ratio is the median of
the per-round ratios. Afterwards every text that got a 200 must be `delivered`.

The issue names no goal for this comparison; the ratio is reported as measured.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness

DB_NAME = f"loyaltysms_bench_callbacks_{os.getpid()}"
STATUS = "/webhooks/twilio/status"
FORM = "application/x-www-form-urlencoded"
ACCOUNT = "AC" + "b" * 32
TOKEN = "bench-auth-token-0123456789abcdef"  # noqa: S105 - a throwaway database
FROM_NUMBER = "+14155550142"

SEED = """
SELECT setseed(0.42);

INSERT INTO messaging_subscriber (tenant_id, phone, member_id, status, source, timezone,
    timezone_candidates, region, country, subscribed_at, unread_count, needs_attention,
    created_at, updated_at)
SELECT %(tenant)s, '+1212' || lpad(n::text, 7, '0'), NULL, 'subscribed', 'checkout',
       'America/New_York', '{}', 'NY', 'US', %(then)s, 0, FALSE, %(then)s, %(then)s
FROM generate_series(1, %(texts)s) AS n;

INSERT INTO messaging_outboundmessage (tenant_id, subscriber_id, sender_id, "to", kind, source,
    source_ref, dedupe_key, body, encoding, segments, price_estimate, status, status_reason,
    error_code, carrier_sid, attempts, send_after, expires_at, created_at, sending_at, sent_at,
    delivered_at, finished_at, updated_at)
SELECT s.tenant_id, s.id, %(sender)s, s.phone, 'transactional', 'bench', '', 'bench:' || s.id,
       'Your order has shipped. Reply STOP to opt out.', 'GSM7', 1, 0.0079, 'sent', '', '',
       'SM' || lpad(to_hex(s.id), 32, '0'), 1, %(then)s, NULL, %(then)s, %(then)s, %(then)s,
       NULL, NULL, %(then)s
FROM messaging_subscriber s
WHERE s.tenant_id = %(tenant)s
ORDER BY s.id;
"""

# The webhook's change, for a batch: status_receive() moves `sent` to `delivered` and sets
# the same columns (sent_at is already set for these texts; the sid must match).
APPLY = """
UPDATE messaging_outboundmessage o
SET status = r.status, error_code = '', delivered_at = now(), finished_at = now(),
    updated_at = now()
FROM bench_receipt_in r
WHERE o.id = r.message_id AND o.carrier_sid = r.sid
  AND o.status IN ('queued', 'deferred', 'sending', 'unknown', 'sent')
"""


def receipt_params(message_id: int, phone: str) -> dict:
    """What Twilio posts to a status callback for a delivered SMS."""
    sid = f"SM{message_id:032x}"
    return {
        "SmsSid": sid,
        "SmsStatus": "delivered",
        "MessageStatus": "delivered",
        "To": phone,
        "MessageSid": sid,
        "AccountSid": ACCOUNT,
        "From": FROM_NUMBER,
        "ApiVersion": "2010-04-01",
        "RawDlrDoneDate": "2611260203",
    }


def signed_receipts(base_url: str, texts: list[tuple[int, str]]) -> list[tuple]:
    """(method, path, body, headers) for each text, signed with the account's token over the
    full URL and the form fields, as Twilio signs."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    requests = []
    for message_id, phone in texts:
        path = f"{STATUS}?m={message_id}"
        params = receipt_params(message_id, phone)
        headers = {
            "Content-Type": FORM,
            "X-Twilio-Signature": validator.compute_signature(base_url + path, params),
        }
        requests.append(("POST", path, urlencode(params).encode(), headers))
    return requests


def copy_apply(cursor, texts: list[tuple[int, str]]) -> float:
    """COPY the receipts into a temporary table and apply them with one UPDATE … FROM, in one
    transaction; seconds taken (committed)."""
    data = io.StringIO(
        "".join(f"{message_id}\tSM{message_id:032x}\tdelivered\n" for message_id, _ in texts)
    )
    raw = cursor.connection
    began = time.perf_counter()
    cursor.execute(
        "CREATE TEMP TABLE bench_receipt_in (message_id bigint, sid text, status text) "
        "ON COMMIT DROP"
    )
    cursor.copy_expert("COPY bench_receipt_in FROM STDIN", data)
    cursor.execute(APPLY)
    updated = cursor.rowcount
    raw.commit()
    elapsed = time.perf_counter() - began
    assert updated == len(texts), (updated, len(texts))
    return elapsed


def copy_plain(cursor, texts: list[tuple[int, str]]) -> float:
    """The same rows COPYed into a plain table of their own (reference only)."""
    data = io.StringIO(
        "".join(f"{message_id}\tSM{message_id:032x}\tdelivered\n" for message_id, _ in texts)
    )
    began = time.perf_counter()
    cursor.copy_expert("COPY bench_receipt_plain FROM STDIN", data)
    cursor.connection.commit()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measured round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds, webhook only")
    parser.add_argument("--texts", type=int, default=100_000, help="sent texts to receipt")
    args = parser.parse_args()

    harness.setup_django(DB_NAME)
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from messaging.services.setup import sender_connect_twilio

    load_start = os.getloadavg()
    with harness.bench_database(DB_NAME):
        tenant = harness.create_brand("receipts", "Receipts", "receipts@bench.test").tenant
        sender = sender_connect_twilio(
            tenant=tenant, account_sid=ACCOUNT, auth_token=TOKEN, from_number=FROM_NUMBER, mps=100
        )
        began = time.perf_counter()
        then = timezone.now() - timedelta(minutes=5)
        with connection.cursor() as cursor:
            cursor.execute(
                SEED, {"tenant": tenant.pk, "sender": sender.pk, "texts": args.texts, "then": then}
            )
            cursor.execute(
                'SELECT id, "to" FROM messaging_outboundmessage WHERE tenant_id = %s ORDER BY id',
                [tenant.pk],
            )
            texts = cursor.fetchall()
            cursor.execute(
                "CREATE TABLE bench_receipt_plain (message_id bigint, sid text, status text)"
            )
            cursor.execute("VACUUM ANALYZE")
        connection.close()
        print(
            f"{len(texts):,} sent texts of one brand on Twilio (seeded in "
            f"{time.perf_counter() - began:.1f} s); load average at start "
            + "/".join(f"{x:.2f}" for x in load_start)
        )

        # The baseline's own connection, outside Django, autocommit off: one transaction a batch.
        sql = harness.connect(DB_NAME)
        used = 0  # texts are taken in order; each gets exactly one receipt

        def take(count: int) -> list[tuple[int, str]]:
            nonlocal used
            if used + count > len(texts):
                raise RuntimeError("out of sent texts: raise --texts")
            batch = texts[used : used + count]
            used += count
            return batch

        with harness.web_server(DB_NAME) as port:
            base = settings.PUBLIC_BASE_URL or f"http://127.0.0.1:{port}"
            requests = signed_receipts(base, texts)

            def receipt(i: int):
                if i >= len(requests):
                    raise RuntimeError("out of sent texts: raise --texts")
                return requests[i]

            def webhook(seconds: float) -> harness.LoadResult:
                nonlocal used, cpu_used
                cpu_before = harness.server_cpu()
                result = harness.closed_loop(
                    port, receipt, clients=args.clients, seconds=seconds, start=used
                )
                cpu_used += harness.server_cpu() - cpu_before
                used += result.requests
                return result

            cpu_used = 0.0

            warm = webhook(args.warmup)
            with sql.cursor() as cursor:
                copy_apply(cursor, take(1000))
            expected = 1000 + warm.requests - warm.errors  # texts that must end delivered
            rounds = []
            cpu_used = 0.0  # gunicorn's CPU seconds in the measured rounds
            for n in range(1, args.rounds + 1):
                result = webhook(args.seconds)
                count = result.requests
                batch = take(count)
                with sql.cursor() as cursor:
                    apply_s = copy_apply(cursor, batch)
                    plain_s = copy_plain(cursor, batch)
                expected += count + result.requests - result.errors
                rounds.append((result, count / apply_s, count / plain_s))
                print(
                    f"round {n}: webhook {result.rate:7.1f} receipts/s ({count:,}, "
                    f"p50 {result.percentile(50):.1f} ms, p99 {result.percentile(99):.1f} ms, "
                    f"non-2xx {result.errors}); COPY + UPDATE {count / apply_s:9,.0f} rows/s; "
                    f"plain COPY {count / plain_s:9,.0f} rows/s"
                )

        sent_ok = sum(r.requests - r.errors for r, _, _ in rounds)
        errors = sum(r.errors for r, _, _ in rounds)
        with sql.cursor() as cursor:
            cursor.execute("SELECT status, count(*) FROM messaging_outboundmessage GROUP BY status")
            by_status = dict(cursor.fetchall())
        sql.close()

    rates = [r.rate for r, _, _ in rounds]
    applies = [a for _, a, _ in rounds]
    plains = [p for _, _, p in rounds]
    ratios = [r.rate / a for r, a, _ in rounds]
    figure, baseline, plain = (harness.median(x) for x in (rates, applies, plains))
    ratio = harness.median(ratios)
    p50 = harness.median([r.percentile(50) for r, _, _ in rounds])
    p99 = harness.median([r.percentile(99) for r, _, _ in rounds])
    print(
        f"\nmedians of {args.rounds} rounds x {args.seconds:.0f} s, {args.clients} clients, "
        "closed loop:"
    )
    print(f"  status webhook (gunicorn)             {figure:10,.1f} receipts/s")
    print(
        f"    latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; gunicorn CPU "
        f"{cpu_used / max(1, sent_ok) * 1000:.1f} ms a receipt"
    )
    print(f"  COPY + one UPDATE … FROM (baseline)   {baseline:10,.0f} receipts/s")
    print(f"  plain COPY into a table (reference)   {plain:10,.0f} rows/s")
    print(
        f"  ratio webhook/baseline                {ratio:10.2%}   median of per-round ratios ("
        + ", ".join(f"{x:.2%}" for x in ratios)
        + ")"
    )
    print("  goal: none stated by the issue (reported)")
    # Every receipt answered 200 moved its text to delivered, and so did the baseline's.
    check_ok = errors == 0 and by_status.get("delivered", 0) == expected
    print(
        f"check: {sent_ok:,} receipts answered 200, {errors} refused or failed; texts now "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(by_status.items()))
        + (" → ok" if check_ok else " → FAILED")
    )
    load_end = os.getloadavg()
    print("load average at the end " + "/".join(f"{x:.2f}" for x in load_end))
    harness.record(
        "status callback",
        "receipts applied through the webhook",
        f"{figure:,.0f} receipts/s",
        baseline=f"COPY + UPDATE … FROM {baseline:,.0f}/s",
        ratio=f"{ratio:.2%}",
        goal="none stated",
        met=None,
    )
    return 0 if check_ok else 1


if __name__ == "__main__":
    sys.exit(main())
