"""Importing numbers that consented elsewhere, each with its evidence (compliance.md).

A row needs the number and the consent it was given: when (consented_at), and the disclosure
text shown (a column, or one text for the whole file). Each row is its own transaction; bad
rows are reported by line and never undo good ones. Imported numbers are subscribed without a
confirmation text: they confirmed where they signed up.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import ConsentSource, Subscriber, SubscriberImport
from messaging.selectors import e164_or_none
from messaging.services.subscribers import Evidence, subscriber_opt_in
from programs.models import ImportStatus

URL = re.compile(r"^https?://\S+$")
COLUMNS = ("phone", "consented_at", "consent_text", "consent_url", "ip", "user_agent", "source")
ERRORS_KEPT = 1000


@dataclass
class SubscriberImportReport:
    imported: int = 0
    already_subscribed: int = 0
    failed: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, why)

    def fail(self, line: int, why: str) -> None:
        self.failed += 1
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append((line, why))


def subscribers_import(
    *,
    tenant: Tenant,
    rows: Iterable[dict[str, str]],
    now: datetime,
    consent_text: str = "",
    actor: str = "",
    report: SubscriberImportReport | None = None,
    progress: Callable[[int], None] | None = None,
) -> SubscriberImportReport:
    report = report if report is not None else SubscriberImportReport()
    for line, row in enumerate(rows, start=2):
        if progress is not None:
            progress(line - 1)
        row = {key.strip().lower(): (value or "").strip() for key, value in row.items() if key}
        phone = e164_or_none(row.get("phone", ""), tenant.default_country)
        text = row.get("consent_text") or consent_text
        consented_at = (
            parse_datetime(row.get("consented_at", "")) if row.get("consented_at") else None
        )
        if phone is None:
            report.fail(line, f"phone: {row.get('phone', '')!r} is not a phone number")
            continue
        if not text:
            report.fail(line, "consent_text: the disclosure the person agreed to is required")
            continue
        if consented_at is None or consented_at.tzinfo is None:
            report.fail(line, "consented_at: an ISO 8601 time with its offset is required")
            continue
        ip = row.get("ip") or None
        if ip is not None:
            try:
                ip = str(ipaddress.ip_address(ip))
            except ValueError:
                report.fail(line, f"ip: {ip!r} is not an IP address")
                continue
        if row.get("consent_url") and not URL.match(row["consent_url"]):
            report.fail(line, "consent_url: an http(s) URL, or empty")
            continue
        evidence = Evidence(
            source=ConsentSource.IMPORT,
            disclosure_text=text,
            page_url=row.get("consent_url", "")[:2000],
            ip=ip,
            user_agent=row.get("user_agent", ""),
            actor=actor,
            extra={
                "consented_at": consented_at.isoformat(),
                "original_source": row.get("source", ""),
            },
        )
        try:
            with transaction.atomic(), tenant_scope(tenant):
                before = Subscriber.objects.filter(phone=phone).values_list("status", flat=True)
                was = before.first()
                subscriber_opt_in(
                    tenant=tenant,
                    phone=phone,
                    evidence=evidence,
                    now=now,
                    double_opt_in=False,
                    send_confirmation=False,
                )
        except (ValueError, TypeError, DatabaseError) as exc:
            # A value the checks above let through but the database refuses: this row only.
            report.fail(line, str(exc).splitlines()[0])
            continue
        if was == "subscribed":
            report.already_subscribed += 1
        else:
            report.imported += 1
    return report


def subscribers_import_csv(
    *,
    tenant: Tenant,
    file: TextIO | bytes,
    now: datetime,
    consent_text: str = "",
    actor: str = "",
    progress: Callable[[int], None] | None = None,
) -> SubscriberImportReport:
    report = SubscriberImportReport()
    if isinstance(file, bytes):
        try:
            file = io.StringIO(file.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            report.fail(1, f"the file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8")
            return report
    reader = csv.DictReader(file)
    try:
        if not reader.fieldnames or "phone" not in [f.strip().lower() for f in reader.fieldnames]:
            report.fail(1, "the header needs a 'phone' column (and consented_at, consent_text)")
            return report
        return subscribers_import(
            tenant=tenant,
            rows=reader,
            now=now,
            consent_text=consent_text,
            actor=actor,
            report=report,
            progress=progress,
        )
    except csv.Error as exc:
        report.fail(reader.line_num, f"unreadable CSV: {exc}")
        return report


PROGRESS_EVERY = 100  # rows between progress updates


def subscriber_import_queue(
    *, tenant: Tenant, filename: str, content: str, consent_text: str, user
) -> SubscriberImport:
    """Keep an uploaded CSV for a worker; the caller enqueues subscriber_import_run."""
    with tenant_scope(tenant):
        rows = max(sum(1 for _ in io.StringIO(content)) - 1, 0)
        return SubscriberImport.objects.create(
            filename=filename[:255],
            content=content,
            consent_text=consent_text,
            total_rows=rows,
            created_by=user,
        )


def subscriber_import_run(
    *, tenant: Tenant, import_id: int, now: datetime
) -> SubscriberImport | None:
    """Import a queued upload once: a second worker (a redelivered task) finds it claimed."""
    with tenant_scope(tenant):
        jobs = SubscriberImport.objects.filter(pk=import_id)
        if jobs.filter(status=ImportStatus.QUEUED).update(status=ImportStatus.RUNNING) != 1:
            return None
        job = jobs.select_related("created_by").get()

        def progress(rows: int) -> None:
            if rows % PROGRESS_EVERY == 0:
                jobs.update(processed_rows=rows)

        try:
            report = subscribers_import_csv(
                tenant=tenant,
                file=io.StringIO(job.content, newline=""),
                now=now,
                consent_text=job.consent_text,
                actor=job.created_by.email if job.created_by else "",
                progress=progress,
            )
        except Exception:
            jobs.update(status=ImportStatus.FAILED, finished_at=timezone.now(), content="")
            raise
        job.status = ImportStatus.DONE
        job.processed_rows = job.total_rows
        job.imported, job.already_subscribed = report.imported, report.already_subscribed
        job.failed = report.failed
        job.errors = [list(error) for error in report.errors]
        job.content = ""
        job.finished_at = timezone.now()
        job.save()
        return job
