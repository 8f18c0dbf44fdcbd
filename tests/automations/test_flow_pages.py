"""The flow pages of the dashboard: the list and the prebuilt gallery (install, refusals),
the flow's page (diagram with each step's figures, warnings, on/off), the editor (rows added,
removed, redrawn; problems beside their field), dry runs (queued, done by the worker's
service, the report), runs and a member's runs, roles and the outsider brand."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automations.models import DryRunStatus, Flow, FlowDryRun, FlowRun
from automations.services.flow_dryrun import flow_dry_run_execute
from automations.services.flow_work import flows_work_once
from automations.services.flows import flow_create, flow_set_status, flow_update
from loyaltysms.tenancy.context import tenant_scope
from messaging.services.setup import sender_default
from programs.services.program import tier_create

from ..conftest import signed_in
from .conftest import join

STEPS = {
    "start": "hi",
    "steps": {
        "hi": {"type": "send_sms", "body": "Hi {first_name}!", "next": "w"},
        "w": {"type": "wait", "days": 1, "next": "b"},
        "b": {"type": "branch", "if": {"type": "subscribed"}, "yes": "pts", "no": None},
        "pts": {"type": "award_points", "points": 10, "next": None},
    },
}


@pytest.fixture
def owner(alice_brand):
    return signed_in(alice_brand.owner)


def make_flow(tenant, **fields) -> Flow:
    fields.setdefault("name", "Hello")
    fields.setdefault("trigger", {"type": "member_enrolled"})
    fields.setdefault("steps", STEPS)
    return flow_create(tenant=tenant, now=timezone.now(), **fields)


# --- the list and the gallery ---------------------------------------------------------------
def test_the_list_invites_a_prebuilt_flow_and_installs_it_as_a_draft(alice_brand, owner):
    page = owner.get("/flows/").content.decode()
    assert "No flows yet" in page and "Prebuilt flows" in page
    assert "Create a tier first" in page  # VIP upgrade needs a tier
    response = owner.post(
        "/flows/install/", {"key": "welcome_series", "shop_url": "https://alices.example/shop"}
    )
    flow = Flow.objects.unscoped().get(tenant=alice_brand.tenant)
    assert response.status_code == 302 and response["Location"] == f"/flows/{flow.pk}/"
    assert flow.status == "draft" and flow.template == "welcome_series"
    page = owner.get(f"/flows/{flow.pk}/").content.decode()
    assert "Switch on" in page and "alices.example" in page


def test_install_refusals_come_back_as_messages(alice_brand, owner):
    response = owner.post("/flows/install/", {"key": "vip_upgrade"}, follow=True)
    assert "Create a tier first" in response.content.decode()
    response = owner.post("/flows/install/", {"key": "welcome_series"}, follow=True)
    assert "link to your shop" in response.content.decode().lower()
    assert not Flow.objects.unscoped().filter(tenant=alice_brand.tenant).exists()


def test_the_list_costs_the_same_queries_for_1_or_12_flows(alice_brand, owner):
    tenant = alice_brand.tenant

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert owner.get("/flows/").status_code == 200
        return len(captured)

    make_flow(tenant)
    queries()
    few = queries()
    for n in range(11):
        make_flow(tenant, name=f"Flow {n}")
    assert queries() == few


# --- the flow's page ------------------------------------------------------------------------
def test_the_diagram_shows_each_step_with_what_it_has_done(alice_brand, owner):
    tenant = alice_brand.tenant
    sender = sender_default(tenant)
    sender.mps = 100
    sender.save(update_fields=["mps"])
    flow = flow_set_status(flow=make_flow(tenant), status="live", now=timezone.now())
    join(tenant, 1, timezone.now())
    join(tenant, 2, timezone.now())
    flows_work_once(tenant=tenant, now=timezone.now)
    flows_work_once(tenant=tenant, now=lambda: timezone.now() + timedelta(days=2))
    response = owner.get(f"/flows/{flow.pk}/")
    page = response.content.decode()
    assert "Text: “Hi {first_name}!”" in page
    assert "Wait 1 day" in page and "If: still subscribed?" in page and "Award 10 points" in page
    assert "sent 2" in page and "yes 2 · no 0" in page and "awarded 2" in page
    figures = response.context["figures"]
    assert (figures.entered, figures.sent) == (2, 2)
    assert "Pause" in page


def test_switching_on_pausing_and_warnings(alice_brand, owner):
    tenant = alice_brand.tenant
    flow = make_flow(
        tenant,
        trigger={"type": "birthday", "at": "23:00"},
        steps={"start": "a", "steps": {"a": {"type": "send_sms", "body": "Hi", "next": None}}},
    )
    page = owner.get(f"/flows/{flow.pk}/").content.decode()
    assert "Before you switch it on" in page and "outside the sending window" in page
    owner.post(f"/flows/{flow.pk}/status/", {"status": "live"})
    flow.refresh_from_db()
    assert flow.status == "live"
    owner.post(f"/flows/{flow.pk}/status/", {"status": "paused"})
    flow.refresh_from_db()
    assert flow.status == "paused"
    owner.post(f"/flows/{flow.pk}/status/", {"status": "nonsense"})
    flow.refresh_from_db()
    assert flow.status == "paused"


# --- the editor -----------------------------------------------------------------------------
def _editor_post(rows: list[dict], **fields) -> dict:
    data = {
        "name": "Built here",
        "trigger_type": "member_enrolled",
        "entry_limit": "once",
        "audience": "members",
        "segment_id": "",
        "start": rows[0]["id"] if rows else "",
        "step_count": str(len(rows)),
        "action": "save",
    }
    for n, row in enumerate(rows):
        for key, value in row.items():
            data[f"step-{n}-{key}"] = value
    data.update(fields)
    return data


def test_the_editor_builds_a_flow_from_rows(alice_brand, owner):
    tier = tier_create(
        tenant=alice_brand.tenant,
        name="Gold",
        threshold=Decimal(100),
        basis="points_earned",
        period="lifetime",
    )
    page = owner.get("/flows/new/").content.decode()
    assert 'name="step-0-body"' in page
    rows = [
        {"id": "s1", "type": "send_sms", "body": "Welcome {first_name}", "next": "s2"},
        {
            "id": "s2",
            "type": "wait",
            "days": "2",
            "hours": "",
            "minutes": "",
            "until": "10:00",
            "next": "s3",
        },
        {
            "id": "s3",
            "type": "branch",
            "if": "tier_is",
            "if_tier_id": str(tier.pk),
            "yes": "s4",
            "no": "",
        },
        {"id": "s4", "type": "add_tag", "tag": "gold-welcomed", "next": ""},
    ]
    response = owner.post("/flows/new/", _editor_post(rows, exit_on=["order_placed"]))
    assert response.status_code == 302
    flow = Flow.objects.unscoped().get(tenant=alice_brand.tenant)
    assert flow.entry_limit == "once" and flow.audience == "members"
    assert flow.exit_on == ["order_placed"]
    assert flow.steps == {
        "start": "s1",
        "seq": 0,
        "steps": {
            "s1": {"type": "send_sms", "body": "Welcome {first_name}", "next": "s2"},
            "s2": {
                "type": "wait",
                "days": 2,
                "hours": 0,
                "minutes": 0,
                "until": "10:00",
                "next": "s3",
            },
            "s3": {
                "type": "branch",
                "if": {"type": "tier_is", "tier_id": tier.pk},
                "yes": "s4",
                "no": None,
            },
            "s4": {"type": "add_tag", "tag": "gold-welcomed", "next": None},
        },
    }
    page = owner.get(f"/flows/{flow.pk}/edit/").content.decode()
    assert "Welcome {first_name}" in page and 'value="gold-welcomed"' in page


def test_editor_problems_sit_beside_their_fields_and_nothing_is_saved(alice_brand, owner):
    rows = [
        {"id": "s1", "type": "send_sms", "body": "Hi {frist_name}", "next": "s2"},
        {
            "id": "s2",
            "type": "wait",
            "days": "0",
            "hours": "0",
            "minutes": "0",
            "until": "",
            "next": "",
        },
    ]
    response = owner.post("/flows/new/", _editor_post(rows, name=""))
    assert response.status_code == 422
    editor = response.context["editor"]
    assert editor.errors["name"]
    by_id = {row.id: row for row in editor.rows}
    assert "Unknown tag" in by_id["s1"].errors["body"][0]
    assert "wait for a duration" in by_id["s2"].errors["row"][0]
    assert not Flow.objects.unscoped().filter(tenant=alice_brand.tenant).exists()


def test_rows_are_added_removed_and_redrawn_without_saving(alice_brand, owner):
    rows = [{"id": "s1", "type": "send_sms", "body": "Hi", "next": ""}]
    response = owner.post("/flows/new/", _editor_post(rows, action="add:wait"))
    editor = response.context["editor"]
    assert [r.id for r in editor.rows] == ["s1", "s2"]
    assert editor.rows[0].data["next"] == "s2"  # the last step now leads to the new one
    rows = [
        {"id": "s1", "type": "send_sms", "body": "Hi", "next": "s2"},
        {"id": "s2", "type": "award_points", "points": "5", "next": ""},
    ]
    editor = owner.post("/flows/new/", _editor_post(rows, action="remove:1")).context["editor"]
    assert [r.id for r in editor.rows] == ["s1"] and editor.rows[0].data["next"] is None
    rows = [{"id": "s1", "type": "branch", "body": "", "next": ""}]
    page = owner.post("/flows/new/", _editor_post(rows, action="refresh")).content.decode()
    assert 'name="step-0-yes"' in page and 'name="step-0-body"' not in page
    assert not Flow.objects.unscoped().filter(tenant=alice_brand.tenant).exists()


# --- dry runs -------------------------------------------------------------------------------
def test_a_dry_run_is_queued_then_its_report_is_shown(alice_brand, owner):
    tenant = alice_brand.tenant
    flow = make_flow(tenant)
    join(tenant, 1, timezone.now() - timedelta(days=3))
    response = owner.post(f"/flows/{flow.pk}/dry-run/", {"days": "7"})
    job = FlowDryRun.objects.unscoped().get(flow=flow)
    assert response["Location"] == f"/flows/{flow.pk}/dry-runs/{job.pk}/"
    page = owner.get(response["Location"]).content.decode()
    assert "Waiting for a worker" in page and 'hx-trigger="every 2s"' in page
    with tenant_scope(tenant):
        job = flow_dry_run_execute(job=job, now=timezone.now())
    assert job.status == DryRunStatus.DONE
    page = owner.get(f"/flows/{flow.pk}/dry-runs/{job.pk}/").content.decode()
    assert "1 would have entered" in page and "every 2s" not in page
    assert job.report["steps"]["hi"]["texts"] == 1
    assert FlowRun.objects.unscoped().filter(tenant=tenant).count() == 0  # nothing kept
    response = owner.post(f"/flows/{flow.pk}/dry-run/", {"days": "365"}, follow=True)
    assert "1 to 90 days" in response.content.decode()


# --- runs, roles, the outsider --------------------------------------------------------------
def test_runs_a_runs_history_and_a_members_flows(alice_brand, owner):
    tenant = alice_brand.tenant
    flow = flow_set_status(flow=make_flow(tenant), status="live", now=timezone.now())
    member = join(tenant, 1, timezone.now())
    flows_work_once(tenant=tenant, now=timezone.now)
    run = FlowRun.objects.unscoped().get(flow=flow)
    page = owner.get(f"/flows/{flow.pk}/runs/").content.decode()
    assert f"/flows/{flow.pk}/runs/{run.pk}/" in page and "Pat1 Lee" in page
    page = owner.get(f"/flows/{flow.pk}/runs/{run.pk}/").content.decode()
    assert "entered" in page and "sent" in page and "waited" in page
    page = owner.get(f"/flows/members/{member.pk}/").content.decode()
    assert "Hello" in page and f"/flows/{flow.pk}/runs/{run.pk}/" in page
    assert "flows they've been in" in owner.get(f"/members/{member.pk}/").content.decode()


def test_a_viewer_reads_flows_but_changes_nothing(alice_brand, vera):
    flow = make_flow(alice_brand.tenant)
    viewer = signed_in(vera)
    assert viewer.get("/flows/").status_code == 200
    assert viewer.get(f"/flows/{flow.pk}/").status_code == 200
    assert viewer.get(f"/flows/{flow.pk}/edit/").status_code == 403
    assert viewer.post(f"/flows/{flow.pk}/status/", {"status": "live"}).status_code == 403
    assert viewer.post("/flows/install/", {"key": "welcome_series"}).status_code == 403
    assert viewer.post(f"/flows/{flow.pk}/dry-run/", {"days": "7"}).status_code == 403
    flow.refresh_from_db()
    assert flow.status == "draft"


def test_the_outsider_gets_404_everywhere(alice_brand, charlie_brand, owner):
    theirs = make_flow(charlie_brand.tenant, name="Charlie's")
    for url in (
        f"/flows/{theirs.pk}/",
        f"/flows/{theirs.pk}/edit/",
        f"/flows/{theirs.pk}/runs/",
        f"/flows/{theirs.pk}/delete/",
    ):
        assert owner.get(url).status_code == 404, url
    assert owner.post(f"/flows/{theirs.pk}/status/", {"status": "live"}).status_code == 404
    assert "Charlie" not in owner.get("/flows/").content.decode()
    theirs.refresh_from_db()
    assert theirs.status == "draft"


def test_delete_needs_its_confirmation(alice_brand, owner):
    flow = make_flow(alice_brand.tenant)
    assert "Yes, delete Hello" in owner.get(f"/flows/{flow.pk}/delete/").content.decode()
    owner.post(f"/flows/{flow.pk}/delete/", {})
    assert Flow.objects.unscoped().filter(pk=flow.pk).exists()
    owner.post(f"/flows/{flow.pk}/delete/", {"confirm": "yes"})
    assert not Flow.objects.unscoped().filter(pk=flow.pk).exists()


def test_a_bad_step_count_is_no_500_and_step_ids_are_never_given_twice(alice_brand, owner):
    rows = [{"id": "s1", "type": "send_sms", "body": "Hi", "next": ""}]
    for count in ("abc", "3.5", "1e3", "-4", "999999999"):
        response = owner.post("/flows/new/", _editor_post(rows, step_count=count, action="x"))
        assert response.status_code == 200, count
    # s2 added, then removed: the next step added is s3, never s2 again.
    rows = [
        {"id": "s1", "type": "send_sms", "body": "Hi", "next": "s2"},
        {"id": "s2", "type": "award_points", "points": "5", "next": ""},
    ]
    editor = owner.post("/flows/new/", _editor_post(rows, seq="2", action="remove:1")).context[
        "editor"
    ]
    rows = [{"id": "s1", "type": "send_sms", "body": "Hi", "next": ""}]
    editor = owner.post(
        "/flows/new/", _editor_post(rows, seq=str(editor.seq), action="add:end")
    ).context["editor"]
    assert [r.id for r in editor.rows] == ["s1", "s3"]
    twice = [
        {"id": "s1", "type": "send_sms", "body": "Hi", "next": ""},
        {"id": "s1", "type": "end"},
    ]
    response = owner.post("/flows/new/", _editor_post(twice))
    assert response.status_code == 422 and "Another step has this id" in response.content.decode()


def test_a_segment_a_flow_filters_on_cant_be_deleted(alice_brand, owner):
    from segments.models import Segment
    from segments.services import segment_create

    segment = segment_create(
        tenant=alice_brand.tenant,
        name="Regulars",
        rules={"field": "sms_status", "op": "is", "value": "subscribed"},
        now=timezone.now(),
    )
    make_flow(alice_brand.tenant, name="Regulars only", segment_id=segment.pk)
    response = owner.post(f"/segments/{segment.pk}/delete/", {"confirm": "yes"}, follow=True)
    assert "Regulars only" in response.content.decode()
    assert Segment.objects.unscoped().filter(pk=segment.pk).exists()


def test_a_save_over_someone_elses_newer_save_is_refused(alice_brand, owner):
    flow = make_flow(alice_brand.tenant)
    rows = [{"id": "s1", "type": "send_sms", "body": "Mine", "next": ""}]
    stale = _editor_post(rows, version=str(flow.version))
    flow_update(flow=flow, now=timezone.now(), name="Theirs")  # a teammate saved meanwhile
    response = owner.post(f"/flows/{flow.pk}/edit/", stale)
    assert response.status_code == 409 and "Someone saved this flow" in response.content.decode()
    flow.refresh_from_db()
    assert flow.name == "Theirs"
    fresh = _editor_post(rows, version=str(flow.version))
    assert owner.post(f"/flows/{flow.pk}/edit/", fresh).status_code == 302


def test_a_dry_run_whose_worker_died_says_so(alice_brand, owner):
    flow = make_flow(alice_brand.tenant)
    with tenant_scope(alice_brand.tenant):
        job = FlowDryRun.objects.create(
            flow=flow,
            days=7,
            flow_version=flow.version,
            status=DryRunStatus.RUNNING,
            created_at=timezone.now() - timedelta(hours=2),
            started_at=timezone.now() - timedelta(hours=2),
        )
    page = owner.get(f"/flows/{flow.pk}/dry-runs/{job.pk}/").content.decode()
    assert "stopped before it finished" in page and "every 2s" not in page
