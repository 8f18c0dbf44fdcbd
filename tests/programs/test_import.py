"""Members from CSV: good rows go in, bad rows are reported with their line, nothing stops."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from loyaltysms.tenancy.context import tenant_scope
from programs.models import Member
from programs.services.imports import members_import_csv


def run(tenant, text: str):
    return members_import_csv(tenant=tenant, file=io.StringIO(text), now=timezone.now())


def test_bad_rows_are_reported_and_the_rest_imported(alice_brand):
    report = run(
        alice_brand.tenant,
        (
            "external_id,first_name,phone,email,birthday,tags\n"
            "c1,Ann,+12125550101,ann@example.com,1990-04-12,vip;wholesale\n"
            "c2,Bo,12,,,\n"
            ",Nobody,,,,\n"
            "c3,Cy,,not-an-email,,\n"
            "c4,Di,,,1990-02-30,\n"
            "c5,Ed,(212) 555-0105,,--02-29,\n"
        ),
    )
    assert (report.created, report.updated, report.failed) == (2, 0, 4)
    assert [(e.line, e.external_id, sorted(e.errors)) for e in report.errors] == [
        (3, "c2", ["phone"]),
        (4, "", ["external_id"]),
        (5, "c3", ["email"]),
        (6, "c4", ["birthday"]),
    ]
    with tenant_scope(alice_brand.tenant):
        ann = Member.objects.get(external_id="c1")
        assert (ann.tags, ann.birthday_display, str(ann.phone)) == (
            ["vip", "wholesale"],
            "1990-04-12",
            "+12125550101",
        )
        assert Member.objects.get(external_id="c5").birthday_display == "--02-29"


def test_a_second_import_updates_and_blank_cells_keep_data(alice_brand):
    run(alice_brand.tenant, "external_id,first_name,email\nc1,Ann,ann@example.com\n")
    report = run(alice_brand.tenant, "external_id,first_name,email\nc1,Annie,\n")
    assert (report.created, report.updated, report.failed) == (0, 1, 0)
    with tenant_scope(alice_brand.tenant):
        ann = Member.objects.get(external_id="c1")
    assert (ann.first_name, ann.email) == ("Annie", "ann@example.com")


def test_headers_with_bom_spaces_and_case_are_understood(alice_brand):
    report = run(alice_brand.tenant, "\ufeff External_ID , First_Name \nc9,Flo\n")
    assert (report.created, report.failed) == (1, 0)


@pytest.mark.parametrize("text", ["", "first_name,email\nAnn,a@b.test\n"])
def test_a_file_without_external_id_is_refused_whole(alice_brand, text):
    report = run(alice_brand.tenant, text)
    assert report.created == 0 and report.failed == 1
    assert "external_id" in report.errors[0].errors["file"][0]


def test_the_command_imports_reports_and_fails_on_bad_rows(alice_brand, charlie_brand, tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("external_id,first_name\nk1,Kim\nk2,Lou\n")
    out = io.StringIO()
    call_command("import_members", "alices-bakery", str(good), stdout=out)
    assert "created 2, updated 0, failed 0" in out.getvalue()
    bad = tmp_path / "bad.csv"
    bad.write_text("external_id,phone\nk3,123\nk4,+12125550104\n")
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 row"):
        call_command("import_members", "alices-bakery", str(bad), stdout=out)
    assert "created 1, updated 0, failed 1" in out.getvalue()
    assert "line 2 (k3): phone:" in out.getvalue()
    with pytest.raises(CommandError, match="No brand"):
        call_command("import_members", "nope", str(good))
    with tenant_scope(charlie_brand.tenant):
        assert not Member.objects.exists()
