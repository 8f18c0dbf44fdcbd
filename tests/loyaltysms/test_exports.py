"""CSV exports of the members and subscribers lists: the list's filters, progress while a
worker writes it in chunks, the download, formula-safe cells, and a members file that imports
back unchanged."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from loyaltysms import exports
from loyaltysms.models import AuditEvent, Export, ExportStatus
from loyaltysms.tenancy.context import tenant_scope
from programs.services.imports import members_import_csv
from programs.services.members import Birthday, member_upsert

from ..automations.conftest import Clock, subscribe_number
from ..conftest import signed_in


def members(tenant, count: int) -> None:
    now = timezone.now()
    for n in range(count):
        member_upsert(
            tenant=tenant,
            external_id=f"cust-{n}",
            now=now,
            first_name="Ann" if n % 2 else "Bo",
            last_name=f"Lee{n}",
            email=f"m{n}@shop.test",
            phone=f"+1212555{n:04d}",
            birthday=Birthday(month=2, day=29) if n == 0 else None,
            tags=["vip", "coffee"] if n == 1 else [],
        )


def start(client, kind: str, **filters) -> Export:
    response = client.post(reverse("export_start", args=[kind]), filters)
    assert response.status_code == 302
    export_id = int(response["Location"].rstrip("/").split("/")[-1])
    return Export.objects.unscoped().get(pk=export_id)


def download(client, job: Export) -> list[dict]:
    response = client.get(reverse("export_download", args=[job.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="')
    body = b"".join(response.streaming_content)
    assert len(body) == int(response["Content-Length"])
    return list(csv.DictReader(io.StringIO(body.decode())))


def test_members_export_with_the_lists_filter_shows_progress_then_downloads(
    alice_brand, alice_client, charlie_brand, monkeypatch
):
    members(alice_brand.tenant, 7)
    members(charlie_brand.tenant, 3)  # never in alice's file
    monkeypatch.setattr(exports, "CHUNK", 2)  # four chunks: progress after each
    job = start(alice_client, "members", q="Ann")
    page = alice_client.get(reverse("export_detail", args=[job.pk]))
    assert "Waiting for a worker" in page.content.decode()
    assert alice_client.get(reverse("export_download", args=[job.pk]))["Location"] == reverse(
        "export_detail", args=[job.pk]
    )

    seen = []  # what the page would read after each chunk
    original = exports._lines

    def observed(kind, queryset, progress):
        def record(done):
            progress(done)
            seen.append(Export.objects.unscoped().get(pk=job.pk).processed_rows)

        return original(kind, queryset, record)

    monkeypatch.setattr(exports, "_lines", observed)
    exports.export_run(tenant=alice_brand.tenant, export_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.total_rows, job.processed_rows) == (ExportStatus.DONE, 3, 3)
    assert seen == [2, 3]
    partial = alice_client.get(reverse("export_detail", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert "Download 3 rows" in partial.content.decode()
    assert "hx-trigger" not in partial.content.decode()  # done: the page stops polling

    rows = download(alice_client, job)
    assert [row["external_id"] for row in rows] == ["cust-1", "cust-3", "cust-5"]
    assert rows[0]["tags"] == "vip;coffee"
    assert rows[0]["phone"] == "+12125550001"
    assert list(rows[0])[:8] == list(exports.KINDS["members"].header[:8])


def test_a_second_run_of_the_same_export_does_nothing(alice_brand, alice_client):
    members(alice_brand.tenant, 2)
    job = start(alice_client, "members")
    assert exports.export_run(tenant=alice_brand.tenant, export_id=job.pk).total_rows == 2
    assert exports.export_run(tenant=alice_brand.tenant, export_id=job.pk) is None


def test_the_members_file_imports_back_unchanged(alice_brand, alice_client):
    members(alice_brand.tenant, 4)
    job = start(alice_client, "members")
    exports.export_run(tenant=alice_brand.tenant, export_id=job.pk)
    body = b"".join(alice_client.get(reverse("export_download", args=[job.pk])).streaming_content)
    report = members_import_csv(
        tenant=alice_brand.tenant, file=io.StringIO(body.decode()), now=timezone.now()
    )
    assert (report.created, report.failed) == (0, 0), report.errors
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert rows[0]["birthday"] == "--02-29"


def test_cells_a_spreadsheet_would_run_start_with_a_quote(alice_brand, alice_client):
    now = timezone.now()
    member_upsert(
        tenant=alice_brand.tenant,
        external_id="evil",
        now=now,
        first_name='=HYPERLINK("http://x.test","click")',
        last_name="@SUM(A1)",
        phone="+12125550199",
    )
    job = start(alice_client, "members")
    exports.export_run(tenant=alice_brand.tenant, export_id=job.pk)
    (row,) = download(alice_client, job)
    assert row["first_name"] == '\'=HYPERLINK("http://x.test","click")'
    assert row["last_name"] == "'@SUM(A1)"
    assert row["phone"] == "+12125550199"  # a phone number stays as it is


@pytest.mark.parametrize(
    ("value", "escaped"),
    [("-5", "-5"), ("+1 (212) 555-0100", "+1 (212) 555-0100"), ("-cmd|x", "'-cmd|x"),
     ("+A1", "'+A1"), ("\tx", "'\tx"), ("plain", "plain")],
)  # fmt: skip
def test_formula_cells(value, escaped):
    assert exports._cell(value) == escaped


def test_subscribers_export_by_status(alice_brand, alice_client):
    clock = Clock(timezone.now())
    for n in range(3):
        subscribe_number(alice_brand.tenant, n, clock())
    job = start(alice_client, "subscribers", status="subscribed", ignored="x")
    assert job.filters == {"status": "subscribed"}
    exports.export_run(tenant=alice_brand.tenant, export_id=job.pk)
    rows = download(alice_client, job)
    assert sorted(row["phone"] for row in rows) == [f"+121255500{n:02d}" for n in range(3)]
    assert {row["status"] for row in rows} == {"subscribed"}
    assert {row["source"] for row in rows} == {"checkout"}


def test_unknown_kinds_and_viewers_are_refused(alice_brand, vera):
    owner = signed_in(alice_brand.owner)
    assert owner.post(reverse("export_start", args=["ledger"])).status_code == 404
    assert signed_in(vera).post(reverse("export_start", args=["members"])).status_code == 403


def test_exports_are_kept_a_week_and_stuck_ones_fail(alice_brand, alice_client, charlie_brand):
    old = start(alice_client, "members")
    exports.export_run(tenant=alice_brand.tenant, export_id=old.pk)
    stuck = start(signed_in(charlie_brand.owner), "members")
    now = timezone.now()
    Export.objects.unscoped().filter(pk=old.pk).update(
        created_at=now - timedelta(days=exports.EXPORT_KEPT_DAYS, minutes=1)
    )
    # Past its week it is gone for the page at once, before the purge has run.
    assert alice_client.get(reverse("export_download", args=[old.pk])).status_code == 404
    assert alice_client.get(reverse("export_detail", args=[old.pk])).status_code == 404
    assert exports.exports_purge(now=now) == 1
    assert not Export.objects.unscoped().filter(pk=old.pk).exists()
    # A job still running an hour after it started (its worker died) stops waiting; one never
    # started is left queued for beat to send again (test_job_recovery.py).
    Export.objects.unscoped().filter(pk=stuck.pk).update(
        status=ExportStatus.RUNNING, started_at=now
    )
    waiting = start(alice_client, "subscribers")
    assert exports.exports_purge(now=now + exports.STUCK_AFTER + timedelta(seconds=1)) == 0
    stuck.refresh_from_db()
    waiting.refresh_from_db()
    assert stuck.status == ExportStatus.FAILED
    assert waiting.status == ExportStatus.QUEUED
    page = signed_in(charlie_brand.owner).get(reverse("export_detail", args=[stuck.pk]))
    assert (
        "stopped on an error" in page.content.decode() and "hx-trigger" not in page.content.decode()
    )


def test_a_second_click_reuses_the_export_under_way_and_each_is_audited(alice_brand, alice_client):
    first = start(alice_client, "members", q="Ann")
    assert start(alice_client, "members", q="Ann").pk == first.pk
    assert start(alice_client, "members", q="Bo").pk != first.pk
    exports.export_run(tenant=alice_brand.tenant, export_id=first.pk)
    assert start(alice_client, "members", q="Ann").pk != first.pk  # done: a fresh one
    with tenant_scope(alice_brand.tenant):
        audits = list(AuditEvent.objects.filter(action="export.created").order_by("pk"))
    assert len(audits) == 3
    assert (audits[0].actor, audits[0].target, audits[0].detail) == (
        alice_brand.owner,
        "members",
        {"q": "Ann"},
    )


def test_tags_are_formula_safe_too():
    assert (
        exports._cell(['=HYPERLINK("http://x","c")', "vip"]) == '\'=HYPERLINK("http://x","c");vip'
    )


def test_the_list_pages_export_what_they_show(alice_brand, alice_client, vera):
    page = alice_client.get(reverse("members") + "?q=Ann").content.decode()
    assert reverse("export_start", args=["members"]) in page
    assert '<input type="hidden" name="q" value="Ann">' in page
    page = alice_client.get(reverse("subscribers") + "?status=subscribed").content.decode()
    assert reverse("export_start", args=["subscribers"]) in page
    assert '<input type="hidden" name="status" value="subscribed">' in page
    assert "Export CSV" not in signed_in(vera).get(reverse("members")).content.decode()
