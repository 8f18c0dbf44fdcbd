"""The segment pages of the dashboard: the list with live counts, the builder (its rows, the
live count and sample, problems beside their condition, the JSON editor), edit and delete,
roles and the outsider brand. State comes from the real services."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from loyaltysms.models import AuditEvent
from loyaltysms.tenancy.context import tenant_scope
from messaging.services.subscribers import Evidence, subscriber_opt_in
from programs.models import Member, Tier
from programs.services import members, orders, program
from segments import demo
from segments.forms import describe
from segments.models import Segment
from segments.rules import FIELDS, validate_rules
from segments.selectors import segment_count
from segments.services import segment_create

from ..conftest import signed_in

# (external id, name, phone or None, order subtotal or None)
PEOPLE = [
    ("ann", "Ann Lee", "+12125550101", "240"),
    ("bo", "Bo Park", None, "600"),
    ("cy", "Cy Diaz", "+13125550103", "40"),
    ("di", "Di Fox", None, None),
]
WALK_IN = "+14155550199"  # subscribed, not a member


def _shop(brand, people=PEOPLE) -> dict[str, int]:
    """Tiers Silver (100 points earned) and Gold (500), members with orders (1 point per
    unit), numbers subscribed at checkout and one subscriber who isn't a member."""
    tenant, now = brand.tenant, timezone.now()
    with tenant_scope(tenant):
        tiers = {
            name: program.tier_create(
                tenant=tenant,
                name=name,
                threshold=Decimal(threshold),
                basis="points_earned",
                period="lifetime",
            ).pk
            for name, threshold in (("Silver", 100), ("Gold", 500))
        }
        for external_id, name, phone, subtotal in people:
            first, last = name.split()
            profile = {"first_name": first, "last_name": last}
            if phone:
                profile["phone"] = phone
            members.member_upsert(tenant=tenant, external_id=external_id, now=now, **profile)
            if subtotal:
                orders.order_record(
                    tenant=tenant,
                    order_id=f"{external_id}-1",
                    member_external_id=external_id,
                    subtotal=Decimal(subtotal),
                    currency="USD",
                    now=now,
                )
            if phone:
                subscriber_opt_in(
                    tenant=tenant,
                    phone=phone,
                    member=Member.objects.get(external_id=external_id),
                    evidence=Evidence(source="checkout", disclosure_text="Texts from us."),
                    now=now,
                    double_opt_in=False,
                    send_confirmation=False,
                )
    return tiers


@pytest.fixture
def shop(alice_brand, charlie_brand):
    """Alice's shop, and charlie's with look-alike people (richer, so a leak would show)."""
    tiers = _shop(alice_brand)
    _shop(
        charlie_brand,
        [("zed", "Zed Charlie", "+12125550177", "9000"), ("yu", "Yu Charlie", None, "800")],
    )
    with tenant_scope(alice_brand.tenant):
        subscriber_opt_in(
            tenant=alice_brand.tenant,
            phone=WALK_IN,
            evidence=Evidence(source="keyword"),
            now=timezone.now(),
            double_opt_in=False,
            send_confirmation=False,
        )
    alice_brand.tiers = tiers
    return alice_brand


def balances(brand) -> dict[str, int]:
    with tenant_scope(brand.tenant):
        return {m.full_name: m.points_balance for m in Member.objects.all()}


def builder_post(*conditions, name: str | None = None, action: str | None = None, kind="all"):
    """The builder's form as a browser posts it: a root group of `kind` with the given rows.
    A row is (field, op, value[, extra inputs]) or ("group", kind, [rows])."""
    data: dict[str, list[str]] = {"node": ["r"], "r-kind": [kind]}

    def add(row, row_id):
        data["node"].append(row_id)
        if row[0] == "group":
            data[f"{row_id}-kind"] = [row[1]]
            for n, child in enumerate(row[2]):
                add(child, f"{row_id}_{n}")
            return
        field, op, value, *extra = row
        data[f"{row_id}-kind"] = ["cond"]
        data[f"{row_id}-field"], data[f"{row_id}-op"] = [field], [op]
        if value is not None:
            data[f"{row_id}-value"] = value if isinstance(value, list) else [str(value)]
        for key, raw in (extra[0] if extra else {}).items():
            data[f"{row_id}-{key}"] = [str(raw)]

    for n, row in enumerate(conditions):
        add(row, f"r_{n}")
    if name is not None:
        data["name"] = [name]
    if action is not None:
        data["action"] = [action]
    return data


def errors_of(body: str, row_id: str) -> str:
    found = re.search(rf'<div id="err-{row_id}" class="row-errors"[^>]*>(.*?)</div>', body, re.S)
    assert found, f"no error box for {row_id}"
    return found.group(1)


# --- the list -------------------------------------------------------------------------------
def test_empty_list_explains_segments_and_offers_a_new_one(alice_client):
    body = alice_client.get(reverse("segments")).content.decode()
    assert "No segments yet. A segment is a group of people" in body
    assert f'href="{reverse("segment_new")}"' in body
    # The nav marks where we are.
    assert f'<a href="{reverse("segments")}" aria-current="page">Segments</a>' in body


def test_list_shows_each_segment_with_a_live_count(shop):
    tenant, now = shop.tenant, timezone.now()
    rich = segment_create(
        tenant=tenant,
        name="Big balances",
        rules={"all": [{"field": "points_balance", "op": "gte", "value": 200}]},
        now=now,
    )
    segment_create(tenant=tenant, name="Everyone", rules={"all": []}, now=now)
    client = signed_in(shop.owner)
    body = client.get(reverse("segments")).content.decode()
    assert body.index("Big balances") < body.index("Everyone")  # by name
    count_url = reverse("segment_count", args=[rich.pk])
    assert f'hx-get="{count_url}" hx-trigger="intersect once"' in body
    expected = sum(1 for points in balances(shop).values() if points >= 200)
    assert expected == 2  # Ann 240, Bo 600
    assert client.get(count_url).content.decode().strip() == str(expected)


def test_list_page_queries_do_not_grow_with_segments(shop, django_assert_max_num_queries):
    tenant, now = shop.tenant, timezone.now()
    client = signed_in(shop.owner)
    segment_create(tenant=tenant, name="Seg 000", rules={"all": []}, now=now)
    with CaptureQueriesContext(connection) as one:
        assert client.get(reverse("segments")).status_code == 200
    for n in range(1, 60):
        rules = {"any": [{"field": "points_balance", "op": "gte", "value": n}]}
        segment_create(tenant=tenant, name=f"Seg {n:03d}", rules=rules, now=now)
    with django_assert_max_num_queries(len(one.captured_queries)):
        body = client.get(reverse("segments")).content.decode()
    assert "Seg 000" in body and "Seg 059" in body


# --- the builder: live count and sample -----------------------------------------------------
def test_preview_counts_and_samples_who_matches_in_two_queries(shop):
    client = signed_in(shop.owner)
    data = builder_post(("points_balance", "gte", 100))
    with CaptureQueriesContext(connection) as queries:
        response = client.post(reverse("segment_preview"), data)
    assert response.status_code == 200
    body = response.content.decode()
    expected = sorted(name for name, points in balances(shop).items() if points >= 100)
    assert expected == ["Ann Lee", "Bo Park"]
    assert '<p class="seg-count">2</p>' in body
    for name in expected:
        assert name in body
    assert "Cy Diaz" not in body and "Charlie" not in body
    assert "+1 212-555-0101" in body  # Ann's number, with its status
    assert ">Gold<" in body and ">600<" in body  # Bo's tier and balance
    # One count statement and one sample statement (plus small lookups: session, tiers, …).
    sql = [q["sql"] for q in queries.captured_queries]
    assert sum("count(" in s and "programs_member m" in s for s in sql) == 1
    assert sum(s.startswith("SELECT member_id, subscriber_id FROM") for s in sql) == 1
    # The rest: session, user, membership, the brand's tiers (twice: each read validates),
    # the sampled members and savepoints around each segment statement.
    assert len(sql) <= 18


def test_preview_of_everyone_includes_subscribers_who_are_not_members(shop):
    client = signed_in(shop.owner)
    body = client.post(reverse("segment_preview"), builder_post()).content.decode()
    assert '<p class="seg-count">5</p>' in body  # four members, one walk-in number
    assert "Not a member" in body and "+1 415-555-0199" in body
    # And the JSON editor follows the builder.
    textarea = re.search(
        r'<textarea id="rules-json"[^>]*hx-swap-oob="true">(.*?)</textarea>', body, re.S
    )
    assert json.loads(textarea.group(1).replace("&quot;", '"')) == {"all": []}


def test_preview_of_no_one_says_how_to_widen(shop):
    client = signed_in(shop.owner)
    data = builder_post(("points_balance", "gte", 100000))
    body = client.post(reverse("segment_preview"), data).content.decode()
    assert '<p class="seg-count">0</p>' in body and "No one matches" in body


def test_and_or_not_groups_post_as_a_tree(shop):
    client = signed_in(shop.owner)
    silver = shop.tiers["Silver"]
    # Members at Silver or above who are NOT Gold, or anyone without a number.
    data = builder_post(
        ("group", "any", [("tier", "at_least", silver), ("sms_status", "is", "none")]),
        ("tier", "is", shop.tiers["Gold"], {"not": "1"}),
        name="Silver or no number, not Gold",
        action="save",
    )
    response = client.post(reverse("segment_new"), data)
    assert response.status_code == 302
    with tenant_scope(shop.tenant):
        segment = Segment.objects.get(name="Silver or no number, not Gold")
    assert segment.rules == {
        "all": [
            {
                "any": [
                    {"field": "tier", "op": "at_least", "value": silver},
                    {"field": "sms_status", "op": "is", "value": "none"},
                ]
            },
            {"not": {"field": "tier", "op": "is", "value": shop.tiers["Gold"]}},
        ]
    }
    # Ann (Silver) and Di (no number); not Bo (Gold), not Cy (no tier, has a number).
    assert segment_count(shop.tenant, segment.rules) == 2
    with tenant_scope(shop.tenant):
        event = AuditEvent.objects.get(action="segment.created")
    assert (event.target, event.actor) == (segment.name, shop.owner)


# --- the builder: rows ----------------------------------------------------------------------
def test_add_condition_and_group_then_remove(shop):
    client = signed_in(shop.owner)
    url = reverse("segment_builder")
    body = client.post(url, builder_post(action="add:r")).content.decode()
    assert 'id="r_0-field"' in body and "autofocus" in body
    assert "Choose a field…" in body
    response = client.post(url, builder_post(("orders_count", "gte", 1), action="group:r"))
    body = response.content.decode()
    assert response["HX-Trigger-After-Settle"] == "refresh-preview"
    # A new group under an "all" group is an "any" group, with a first condition to fill.
    assert re.search(r'id="r_1-kind"[^>]*autofocus', body)
    assert re.search(r'<option value="any" selected>any</option>', body)
    assert 'id="r_1_0-field"' in body
    body = client.post(url, builder_post(("orders_count", "gte", 1), action="remove:r_0"))
    assert 'id="r_0-field"' not in body.content.decode()


def test_changing_the_field_offers_its_operators_and_inputs(shop):
    client = signed_in(shop.owner)
    url = reverse("segment_builder")
    # The operator posted belonged to the previous field: the new field's "at least" (or
    # else its first operator) is used.
    body = client.post(url, builder_post(("tier", "between", ""))).content.decode()
    assert '<option value="is">is</option>' in body
    assert '<option value="at_least" selected>is at least</option>' in body
    assert f'<option value="{shop.tiers["Gold"]}">Gold</option>' in body  # the brand's tiers
    body = client.post(url, builder_post(("sms_status", "at_least", ""))).content.decode()
    assert '<option value="is" selected>is</option>' in body
    body = client.post(url, builder_post(("orders_count", "in", ""))).content.decode()
    assert '<option value="gte" selected>is at least</option>' in body
    body = client.post(url, builder_post(("birthday", "in_month", ""))).content.decode()
    assert '<option value="3">March</option>' in body
    body = client.post(url, builder_post(("sms_status", "in", None))).content.decode()
    assert 'type="checkbox" name="r_0-value" value="subscribed"' in body
    body = client.post(url, builder_post(("points_expiring", "gte", "1"))).content.decode()
    assert 'name="r_0-x-days"' in body and "within the next" in body
    body = client.post(url, builder_post(("lifetime_spend", "between", "1"))).content.decode()
    assert 'name="r_0-value2"' in body and 'step="0.01"' in body and "USD" in body
    body = client.post(url, builder_post(("redeemed", "never", None))).content.decode()
    assert 'name="r_0-value"' not in body


def test_every_field_and_operator_has_an_input_and_survives_the_round_trip(shop):
    """Each condition rules.py knows, drawn by the edit page and posted back unchanged by a
    browser, is the same tree."""
    samples = {
        "int": 3,
        "money": "49.90",
        "bool": False,
        "code": "US",
        "zone": "America/Chicago",
        "tag": "vip",
    }
    conditions = []
    for name, spec in FIELDS.items():
        for op, check in spec.ops.items():
            value_spec = describe(check)
            assert value_spec.kind != "text", f"{name} {op}: the builder has no input for it"
            value = samples.get(value_spec.kind)
            if value_spec.kind == "choice":
                value = value_spec.choices[-1]
            if name == "tier":
                value = shop.tiers["Gold"]
            node = {"field": name, "op": op}
            if value_spec.range:
                node["value"] = [value, value]
            elif value_spec.many:
                node["value"] = [value_spec.choices[0], value] if value_spec.choices else [value]
            elif value_spec.kind != "none":
                node["value"] = value
            for key, extra in (spec.extra or {}).items():
                extra_spec = describe(extra)
                node[key] = extra_spec.choices[0] if extra_spec.choices else 7
            conditions.append(node)
    assert len(conditions) > 60  # more than one segment may hold: two trees
    client = signed_in(shop.owner)
    half = len(conditions) // 2
    for n, part in enumerate((conditions[:half], conditions[half:])):
        tree = {"any": [{"not": part[0]}, {"all": part[1:20]}, {"not": {"any": part[20:]}}]}
        validate_rules(tree)
        segment = segment_create(
            tenant=shop.tenant, name=f"All {n}", rules=tree, now=timezone.now()
        )
        page = client.get(reverse("segment_edit", args=[segment.pk])).content.decode()
        data = browser_form(page, "segment-form")
        data["action"] = ["save"]
        response = client.post(reverse("segment_edit", args=[segment.pk]), data)
        assert response.status_code == 302, response.content.decode()
        segment.refresh_from_db()
        assert segment.rules == tree


class _Form(HTMLParser):
    """The values a browser submits for one form of a page."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.data = form_id, False, {}
        self.select: str | None = None
        self.options: list[tuple[str, bool]] = []
        self.textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button"):
            if a.get("type") == "checkbox" and "checked" not in a:
                return
            self.data.setdefault(name, []).append(a.get("value", ""))
        elif tag == "select" and name:
            self.select, self.options = name, []
        elif tag == "option" and self.select:
            self.options.append((a.get("value", ""), "selected" in a))
        elif tag == "textarea" and name:
            self.textarea = name

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        if tag == "select" and self.select:
            chosen = [v for v, selected in self.options if selected] or [self.options[0][0]]
            self.data.setdefault(self.select, []).append(chosen[0])
            self.select = None

    def handle_data(self, data):
        if self.textarea:
            self.data.setdefault(self.textarea, []).append(data)
            self.textarea = None


def browser_form(page: str, form_id: str) -> dict[str, list[str]]:
    parser = _Form(form_id)
    parser.feed(page)
    return parser.data


# --- problems beside their condition --------------------------------------------------------
def test_problems_show_next_to_the_condition_they_are_about(shop):
    client = signed_in(shop.owner)
    data = builder_post(
        ("points_balance", "gte", 10),
        ("group", "any", [("orders_count", "between", ["5"], {"value2": "2"})]),
        ("points_expiring", "gte", "1", {"x-days": ""}),
        name="Broken",
        action="save",
    )
    response = client.post(reverse("segment_new"), data)
    assert response.status_code == 422
    body = response.content.decode()
    assert errors_of(body, "r_0").strip() == ""
    assert "Lowest (5) is above highest (2)." in errors_of(body, "r_1_0")
    assert "Points expiring needs days." in errors_of(body, "r_2")
    assert re.search(r'id="r_2-x-days"[^>]*aria-invalid="true"', body)
    assert 'value="Broken"' in body  # what was typed is kept
    with tenant_scope(shop.tenant):
        assert not Segment.objects.exists()
    # The live preview puts the same problems beside the rows (swapped in out of band).
    body = client.post(reverse("segment_preview"), data).content.decode()
    assert "need fixing" in body
    assert 'id="err-r_1_0" class="row-errors" hx-swap-oob="true"' in body
    assert "Lowest (5) is above highest (2)." in errors_of(body, "r_1_0")


def test_a_blank_value_or_field_is_named_on_its_row(shop):
    client = signed_in(shop.owner)
    data = builder_post(("tier", "is", ""), name="Half done", action="save")
    data["node"].append("r_1")
    data["r_1-kind"] = ["cond"]
    body = client.post(reverse("segment_new"), data).content.decode()
    assert "Give a value." in errors_of(body, "r_0")
    assert "Choose a field, or remove this condition." in errors_of(body, "r_1")


def test_a_taken_name_is_shown_on_the_name_field(shop):
    segment_create(tenant=shop.tenant, name="VIPs", rules={"all": []}, now=timezone.now())
    client = signed_in(shop.owner)
    response = client.post(reverse("segment_new"), builder_post(name="VIPs", action="save"))
    assert response.status_code == 422
    assert "exists already" in response.content.decode()


# --- the JSON editor ------------------------------------------------------------------------
def test_json_editor_replaces_the_builder_or_explains_what_is_wrong(shop):
    client = signed_in(shop.owner)
    url = reverse("segment_builder")
    tree = {"not": {"any": [{"field": "tags", "op": "has_any", "value": ["vip", "tea"]}]}}
    response = client.post(url, {"rules_json": json.dumps(tree)})
    body = response.content.decode()
    assert '<option value="none" selected>none</option>' in body
    assert 'value="vip, tea"' in body
    response = client.post(url, {"rules_json": '{"all": [}'})
    assert response["HX-Retarget"] == "#json-errors"
    assert "Not JSON: Expecting value (line 1, column 10)." in response.content.decode()
    response = client.post(url, {"rules_json": '{"all": [{"field": "shoe_size", "op": "eq"}]}'})
    assert "all[0].field: unknown field &#x27;shoe_size&#x27;" in response.content.decode()


# --- edit and delete ------------------------------------------------------------------------
def test_edit_shows_the_saved_rules_and_saves_changes(shop):
    gold = shop.tiers["Gold"]
    rules = {"all": [{"field": "tier", "op": "is", "value": gold}]}
    segment = segment_create(tenant=shop.tenant, name="Gold", rules=rules, now=timezone.now())
    client = signed_in(shop.owner)
    url = reverse("segment_edit", args=[segment.pk])
    page = client.get(url).content.decode()
    assert f'<option value="{gold}" selected>Gold</option>' in page
    assert 'value="Gold"' in page and "Save changes" in page
    assert reverse("segment_delete", args=[segment.pk]) in page
    data = builder_post(("tier", "at_least", gold), name="Gold and up", action="save")
    assert client.post(url, data).status_code == 302
    segment.refresh_from_db()
    assert segment.name == "Gold and up"
    assert segment.rules == {"all": [{"field": "tier", "op": "at_least", "value": gold}]}
    with tenant_scope(shop.tenant):
        event = AuditEvent.objects.get(action="segment.updated")
    assert (event.actor, event.detail["fields"]) == (shop.owner, ["name", "rules"])
    # Saving it again unchanged records that nothing but the time changed.
    client.post(url, data)
    with tenant_scope(shop.tenant):
        last = AuditEvent.objects.filter(action="segment.updated").latest("pk")
    assert last.detail["fields"] == []


def test_a_segment_whose_tier_was_removed_asks_to_be_fixed(shop):
    silver = shop.tiers["Silver"]
    rules = {"all": [{"field": "tier", "op": "is", "value": silver}]}
    segment = segment_create(tenant=shop.tenant, name="Silver", rules=rules, now=timezone.now())
    with tenant_scope(shop.tenant):
        program.tier_delete(tier=Tier.objects.get(pk=silver))
    client = signed_in(shop.owner)
    assert (
        "Needs fixing" in client.get(reverse("segment_count", args=[segment.pk])).content.decode()
    )
    page = client.get(reverse("segment_edit", args=[segment.pk])).content.decode()
    assert f'<option value="{silver}" selected>Tier #{silver} (removed)</option>' in page
    data = browser_form(page, "segment-form")
    body = client.post(reverse("segment_preview"), data).content.decode()
    assert "That tier no longer exists: choose another." in errors_of(body, "r_0")


def test_delete_asks_first_then_deletes(shop):
    segment = segment_create(
        tenant=shop.tenant, name="Lapsed", rules={"all": []}, now=timezone.now()
    )
    client = signed_in(shop.owner)
    url = reverse("segment_delete", args=[segment.pk])
    page = client.get(url).content.decode()
    assert "Delete the segment Lapsed?" in page and 'name="confirm" value="yes"' in page
    assert "csrfmiddlewaretoken" in page
    # A POST without the confirmation only shows the question again.
    assert "Yes, delete Lapsed" in client.post(url).content.decode()
    with tenant_scope(shop.tenant):
        assert Segment.objects.filter(pk=segment.pk).exists()
    response = client.post(url, {"confirm": "yes"})
    assert response.status_code == 302 and response["Location"] == reverse("segments")
    with tenant_scope(shop.tenant):
        assert not Segment.objects.filter(pk=segment.pk).exists()
        assert AuditEvent.objects.filter(action="segment.deleted", target="Lapsed").exists()


def test_mutating_pages_need_the_csrf_token(shop):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(shop.owner)
    response = client.post(reverse("segment_new"), builder_post(name="X", action="save"))
    assert response.status_code == 403
    page = client.get(reverse("segment_new")).content.decode()
    for form in ("segment-form", "json-form"):  # the builder and the JSON editor
        assert browser_form(page, form)["csrfmiddlewaretoken"], form
    assert "X-CSRFToken" in page  # htmx's requests carry it too


# --- brands and roles -----------------------------------------------------------------------
def test_another_brands_segment_is_not_found(shop, charlie_brand):
    theirs = segment_create(
        tenant=charlie_brand.tenant, name="Charlie's VIPs", rules={"all": []}, now=timezone.now()
    )
    client = signed_in(shop.owner)
    for name in ("segment_edit", "segment_count", "segment_delete"):
        url = reverse(name, args=[theirs.pk])
        assert client.get(url).status_code == 404, name
        if name != "segment_count":
            assert (
                client.post(url, {"confirm": "yes", "action": "save", "name": "x"}).status_code
                == 404
            )
    assert "Charlie" not in client.get(reverse("segments")).content.decode()
    with tenant_scope(charlie_brand.tenant):
        assert Segment.objects.get(pk=theirs.pk).name == "Charlie's VIPs"


def test_viewers_see_segments_and_try_rules_but_cannot_change_them(shop, vera):
    segment = segment_create(tenant=shop.tenant, name="All", rules={"all": []}, now=timezone.now())
    client = signed_in(vera)
    listing = client.get(reverse("segments")).content.decode()
    assert "All" in listing and reverse("segment_new") not in listing
    page = client.get(reverse("segment_edit", args=[segment.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "saving them needs the Marketer role" in body
    assert 'value="save"' not in body and reverse("segment_delete", args=[segment.pk]) not in body
    # Trying rules writes nothing, so it is open to viewers.
    assert client.post(reverse("segment_preview"), builder_post()).status_code == 200
    assert client.post(reverse("segment_builder"), builder_post(action="add:r")).status_code == 200
    for url in (reverse("segment_new"), reverse("segment_delete", args=[segment.pk])):
        assert client.get(url).status_code == 403
        assert client.post(url, builder_post(name="Mine", action="save")).status_code == 403
    data = builder_post(name="Renamed", action="save")
    assert client.post(reverse("segment_edit", args=[segment.pk]), data).status_code == 403
    segment.refresh_from_db()
    assert segment.name == "All"


# --- without JavaScript ---------------------------------------------------------------------
def test_the_builder_works_as_a_plain_form(shop):
    client = signed_in(shop.owner)
    url = reverse("segment_new")
    body = client.post(url, builder_post(action="add:r")).content.decode()
    assert 'id="r_0-field"' in body
    data = builder_post(("orders_count", "gte", 1), action="count")
    body = client.post(url, data).content.decode()
    assert '<p class="seg-count">3</p>' in body  # Ann, Bo and Cy ordered
    body = client.post(url, {"rules_json": "[]"}).content.decode()
    assert "rules: must be an object" in body


# --- demo -----------------------------------------------------------------------------------
def test_demo_segments_are_valid_and_open_in_the_builder(shop):
    result = demo.seed(shop.tenant, now=timezone.now())
    assert result == {"segments": 5}
    client = signed_in(shop.owner)
    listing = client.get(reverse("segments")).content.decode()
    for name, _ in demo.demo_segments(shop.tenant):
        assert escape(name) in listing
    with tenant_scope(shop.tenant):
        saved = list(Segment.objects.all())
    for segment in saved:
        segment_count(shop.tenant, segment.rules)  # valid for the brand
        page = client.get(reverse("segment_edit", args=[segment.pk])).content.decode()
        data = browser_form(page, "segment-form")
        data["action"] = ["save"]
        assert client.post(reverse("segment_edit", args=[segment.pk]), data).status_code == 302
        before = segment.rules
        segment.refresh_from_db()
        assert segment.rules == before  # the builder keeps the tree as it was
    walk_in = next(s for s in saved if s.name == "Subscribers who aren't members yet")
    assert segment_count(shop.tenant, walk_in.rules) == 1
