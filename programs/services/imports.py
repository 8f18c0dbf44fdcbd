"""Bulk import of members from CSV: every good row is upserted, every bad row is reported.

Rows are validated exactly as the API validates a member (MemberUpsertSerializer), and each
row is its own transaction, so a bad row never undoes a good one and the import never stops
half way.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TextIO

from django.db import transaction
from django.utils import timezone

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from programs.models import ImportStatus, MemberImport
from programs.services.members import member_upsert

COLUMNS = (
    "external_id",
    "phone",
    "email",
    "first_name",
    "last_name",
    "birthday",
    "timezone",
    "tags",
)
ERRORS_KEPT = 1000
TAG_SEPARATORS = re.compile(r"[;|]")


@dataclass(frozen=True)
class RowError:
    line: int  # in the file, the header being line 1
    external_id: str
    errors: dict[str, list[str]]


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)

    def fail(self, line: int, external_id: str, errors: dict[str, list[str]]) -> None:
        self.failed += 1
        if len(self.errors) < ERRORS_KEPT:
            self.errors.append(RowError(line=line, external_id=external_id, errors=errors))


def _row_data(row: dict[str, str]) -> dict:
    """The columns we know, without empty cells ("not given": existing data stays)."""
    data = {}
    for column in COLUMNS:
        value = (row.get(column) or "").strip()
        if not value:
            continue
        if column == "tags":
            data["tags"] = [tag.strip() for tag in TAG_SEPARATORS.split(value) if tag.strip()]
        else:
            data[column] = value
    return data


def _messages(detail) -> dict[str, list[str]]:
    return {name: [str(message) for message in messages] for name, messages in detail.items()}


def members_import(
    *,
    tenant: Tenant,
    rows: Iterable[dict[str, str]],
    now: datetime,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    from programs.serializers import MemberUpsertSerializer  # serializers import services

    report = ImportReport()
    with tenant_scope(tenant):
        for line, row in enumerate(rows, start=2):
            data = _row_data(row)
            serializer = MemberUpsertSerializer(data=data, context={"tenant": tenant})
            if not serializer.is_valid():
                report.fail(line, data.get("external_id", ""), _messages(serializer.errors))
            else:
                try:
                    with transaction.atomic():
                        result = member_upsert(tenant=tenant, now=now, **serializer.validated_data)
                except Exception as error:
                    report.fail(line, data["external_id"], {"row": [str(error)]})
                else:
                    if result.created:
                        report.created += 1
                    else:
                        report.updated += 1
            if progress is not None:
                progress(1)
    return report


def members_import_csv(
    *,
    tenant: Tenant,
    file: TextIO,
    now: datetime,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import a CSV with a header row; a file that can't be one is reported, not raised."""
    reader = csv.DictReader(file)
    try:
        header = reader.fieldnames
    except (csv.Error, UnicodeDecodeError) as error:
        return _refused(f"The file is not a readable CSV: {error}")
    if not header:
        return _refused("The file is empty: it needs a header row with external_id.")
    # Spreadsheets add BOMs and spaces around headers; names match without them.
    reader.fieldnames = [name.lstrip("\ufeff").strip().lower() for name in header]
    if "external_id" not in reader.fieldnames:
        return _refused(
            "The header has no external_id column (found: " + ", ".join(reader.fieldnames) + ")."
        )
    try:
        return members_import(tenant=tenant, rows=reader, now=now, progress=progress)
    except (csv.Error, UnicodeDecodeError) as error:
        report = ImportReport()
        report.fail(reader.line_num, "", {"file": [f"Reading stopped: {error}"]})
        return report


def _refused(message: str) -> ImportReport:
    report = ImportReport()
    report.fail(1, "", {"file": [message]})
    return report


PROGRESS_EVERY = 50  # rows between progress writes


def member_import_queue(*, tenant: Tenant, filename: str, content: str, user) -> MemberImport:
    """Keep an uploaded CSV for a worker to import; the caller enqueues member_import_run."""
    with tenant_scope(tenant):
        rows = max(sum(1 for _ in io.StringIO(content)) - 1, 0)
        return MemberImport.objects.create(
            filename=filename[:255], content=content, total_rows=rows, created_by=user
        )


def member_import_run(*, tenant: Tenant, import_id: int, now: datetime) -> MemberImport | None:
    """Import a queued upload once: a second worker (a redelivered task) finds it claimed."""
    with tenant_scope(tenant):
        claimed = MemberImport.objects.filter(pk=import_id, status=ImportStatus.QUEUED).update(
            status=ImportStatus.RUNNING
        )
        if claimed != 1:
            return None
        job = MemberImport.objects.get(pk=import_id)
        done = 0

        def progress(rows: int) -> None:
            nonlocal done
            done += rows
            if done % PROGRESS_EVERY == 0:
                MemberImport.objects.filter(pk=import_id).update(processed_rows=done)

        try:
            report = members_import_csv(
                tenant=tenant, file=io.StringIO(job.content), now=now, progress=progress
            )
        except Exception:
            MemberImport.objects.filter(pk=import_id).update(
                status=ImportStatus.FAILED, finished_at=timezone.now()
            )
            raise
        job.status = ImportStatus.DONE
        job.processed_rows = done
        job.created, job.updated, job.failed = report.created, report.updated, report.failed
        job.errors = [asdict(error) for error in report.errors]
        job.content = ""  # personal data: kept only as long as needed
        job.finished_at = timezone.now()
        job.save()
        return job
