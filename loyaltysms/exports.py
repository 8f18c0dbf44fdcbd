"""CSV exports of a list page (members, subscribers) with the page's filters, written by a
worker in keyset chunks while the export's page shows progress.

The members file has the import's columns first (external_id … tags), so an export edited in
a spreadsheet imports back. Cells that a spreadsheet would run as a formula start with a "'".
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from loyaltysms.models import Export, ExportStatus, Tenant, User
from loyaltysms.services import audit
from loyaltysms.tenancy.context import tenant_scope

CHUNK = 5_000
EXPORT_KEPT_DAYS = 7
# Longer than the task's hard time limit: a job still unfinished then has lost its worker.
STUCK_AFTER = timedelta(hours=1)
# A cell a spreadsheet would evaluate: =… @… and +…/-… that isn't a number or phone number.
FORMULA = re.compile(r"^(?:[=@\t\r]|[+-](?![\d\s().-]*$))")


@dataclass(frozen=True)
class Kind:
    label: str
    header: tuple[str, ...]
    fields: tuple[str, ...]  # values_list() paths, one per column
    rows: Callable[[Tenant, dict], QuerySet]  # the list page's queryset for these filters
    list_url_name: str


def _members(tenant: Tenant, filters: dict) -> QuerySet:
    from programs.models import Member
    from programs.selectors import member_search

    tier = filters.get("tier")
    return member_search(
        Member.objects.all(),
        q=str(filters.get("q", "")),
        tier_id=int(tier) if re.fullmatch(r"[0-9]{1,18}", str(tier or "")) else None,
    )


def _subscribers(tenant: Tenant, filters: dict) -> QuerySet:
    from messaging.models import ConsentSource, Subscriber, SubscriberStatus
    from messaging.selectors import subscriber_search

    status, source = filters.get("status", ""), filters.get("source", "")
    return subscriber_search(
        Subscriber.objects.all(),
        status=status if status in SubscriberStatus.values else "",
        source=source if source in ConsentSource.values else "",
        q=str(filters.get("q", "")),
    )


KINDS: dict[str, Kind] = {
    "members": Kind(
        label="Members",
        header=(
            "external_id", "phone", "email", "first_name", "last_name", "birthday", "timezone",
            "tags", "tier", "points_balance", "points_pending", "lifetime_points",
            "lifetime_spend", "orders_count", "last_order_at", "enrolled_at", "sms_status",
        ),
        fields=(
            "external_id", "phone", "email", "first_name", "last_name", "birthday_year",
            "birthday_month", "birthday_day", "timezone", "tags", "tier__name", "points_balance",
            "points_pending", "lifetime_points", "lifetime_spend", "orders_count",
            "last_order_at", "enrolled_at", "sms_status",
        ),
        rows=_members,
        list_url_name="members",
    ),
    "subscribers": Kind(
        label="Subscribers",
        header=(
            "phone", "status", "source", "member_external_id", "country", "region", "timezone",
            "subscribed_at", "unsubscribed_at", "created_at",
        ),
        fields=(
            "phone", "status", "source", "member__external_id", "country", "region", "timezone",
            "subscribed_at", "unsubscribed_at", "created_at",
        ),
        rows=_subscribers,
        list_url_name="subscribers",
    ),
}  # fmt: skip

FILTERS = ("q", "tier", "status", "source")
DONE_FIELDS = ("content", "size", "processed_rows", "total_rows", "status", "finished_at")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, list):
        return _cell(";".join(value))
    text = str(value)
    return "'" + text if FORMULA.match(text) else text


def _member_row(values: tuple) -> list[str]:
    year, month, day = values[5:8]
    if month is None:
        birthday = ""
    elif year is None:
        birthday = f"--{month:02d}-{day:02d}"
    else:
        birthday = f"{year:04d}-{month:02d}-{day:02d}"
    return [_cell(v) for v in values[:5]] + [birthday] + [_cell(v) for v in values[8:]]


def _lines(kind: str, queryset: QuerySet, progress: Callable[[int], None]) -> Iterator[list]:
    """Every row in id order, CHUNK rows a query (keyset), reporting progress per chunk."""
    spec = KINDS[kind]
    last, done = 0, 0
    while True:
        chunk = list(
            queryset.filter(pk__gt=last).order_by("pk").values_list("pk", *spec.fields)[:CHUNK]
        )
        if not chunk:
            return
        for values in chunk:
            yield _member_row(values[1:]) if kind == "members" else [_cell(v) for v in values[1:]]
        last, done = chunk[-1][0], done + len(chunk)
        progress(done)


@transaction.atomic
def export_create(*, tenant: Tenant, kind: str, filters: dict, user: User) -> Export:
    """A queued export of the list with these filters; the same one still queued or running
    for this person is reused (a second click starts nothing). Audited: it copies personal
    data out."""
    if kind not in KINDS:
        raise ValueError(f"no export of {kind!r}")
    kept = {name: str(filters[name])[:200] for name in FILTERS if filters.get(name)}
    with tenant_scope(tenant):
        Tenant.objects.select_for_update(no_key=True).get(pk=tenant.pk)  # one at a time
        running = Export.objects.filter(
            kind=kind,
            filters=kept,
            created_by=user,
            status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING],
        ).first()
        if running is not None:
            return running
        export = Export.objects.create(kind=kind, filters=kept, created_by=user)
        audit(tenant=tenant, actor=user, action="export.created", target=kind, **kept)
        return export


def exports_purge(*, now: datetime) -> int:
    """Every brand's exports older than EXPORT_KEPT_DAYS are deleted (they hold personal
    data); one running longer than STUCK_AFTER is marked failed (its worker died), so its
    page stops waiting and says to try again. One still queued is not failed: its task may
    have been lost, and beat sends it again (loyaltysms.jobs)."""
    started_before = Q(started_at__lt=now - STUCK_AFTER)
    # Exports started before started_at was kept: counted from when they were made.
    started_before |= Q(started_at__isnull=True, created_at__lt=now - STUCK_AFTER)
    Export.objects.unscoped().filter(started_before, status=ExportStatus.RUNNING).update(
        status=ExportStatus.FAILED, finished_at=now
    )
    deleted, _ = (
        Export.objects.unscoped()
        .filter(created_at__lt=now - timedelta(days=EXPORT_KEPT_DAYS))
        .delete()
    )
    return deleted


def export_run(*, tenant: Tenant, export_id: int) -> Export | None:
    """Write one queued export once (a redelivered task finds it claimed)."""
    with tenant_scope(tenant):
        claimed = Export.objects.filter(pk=export_id, status=ExportStatus.QUEUED).update(
            status=ExportStatus.RUNNING, started_at=timezone.now()
        )
        if claimed != 1:
            return None
        job = Export.objects.get(pk=export_id)
        try:
            spec = KINDS[job.kind]
            queryset = spec.rows(tenant, job.filters)
            Export.objects.filter(pk=job.pk).update(total_rows=queryset.count())
            raw = io.BytesIO()
            text = io.TextIOWrapper(
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0), encoding="utf-8", newline=""
            )
            writer = csv.writer(text)
            writer.writerow(spec.header)
            written = 0
            for line in _lines(
                job.kind,
                queryset,
                lambda done: Export.objects.filter(pk=job.pk).update(processed_rows=done),
            ):
                writer.writerow(line)
                written += 1
            text.flush()
            size = text.buffer.tell()  # the gzip file's position: bytes of CSV written
            text.close()
        except Exception:
            Export.objects.filter(pk=job.pk).update(
                status=ExportStatus.FAILED, finished_at=timezone.now()
            )
            raise
        job.refresh_from_db()
        job.content = raw.getvalue()
        job.size = size
        job.processed_rows = job.total_rows = written  # rows may come and go while it runs
        job.status = ExportStatus.DONE
        job.finished_at = timezone.now()
        job.save(
            update_fields=[
                "content",
                "size",
                "processed_rows",
                "total_rows",
                "status",
                "finished_at",
            ]
        )
        return job


def export_chunks(job: Export) -> Iterator[bytes]:
    """The CSV, unzipped as it is read."""
    with gzip.GzipFile(fileobj=io.BytesIO(bytes(job.content))) as file:
        while block := file.read(64 * 1024):
            yield block


def export_filename(job: Export) -> str:
    return f"{job.kind}-{job.created_at:%Y%m%d-%H%M%S}.csv"
