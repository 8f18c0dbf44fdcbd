"""Bulk import of members from CSV: every good row is upserted, every bad row is reported.

Rows are validated exactly as the API validates a member (MemberUpsertSerializer), and each
row is its own transaction, so a bad row never undoes a good one and the import never stops
half way.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from django.db import transaction

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
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
