"""Invalid trees are refused with a message naming where and what, before any SQL runs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loyaltysms.tenancy.context import tenant_scope
from programs.services.program import tier_create
from segments.rules import MAX_CONDITIONS, MAX_DEPTH, RulesInvalid, validate_rules
from segments.selectors import segment_count, segment_sample, segment_subscriber_ids_sql


def problems(rules, **kwargs) -> list[str]:
    with pytest.raises(RulesInvalid) as caught:
        validate_rules(rules, **kwargs)
    assert caught.value.errors == {"rules": caught.value.problems}
    return caught.value.problems


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"field": "shoe_size", "op": "eq", "value": 9}, "field: unknown field 'shoe_size'"),
        ({"field": "points_balance", "op": "is", "value": 9}, "op: 'is' is not an operator"),
        ({"field": "tags", "op": "gte", "value": "vip"}, "use one of has, has_any, has_all"),
        ({"field": "points_balance", "op": "gte", "value": "lots"}, "must be a whole number"),
        ({"field": "points_balance", "op": "gte", "value": -1}, "must be from 0"),
        ({"field": "points_balance", "op": "gte", "value": True}, "must be a whole number"),
        ({"field": "points_balance", "op": "between", "value": [9, 1]}, "lowest (9) is above"),
        ({"field": "points_balance", "op": "between", "value": 5}, "must be [lowest, highest]"),
        ({"field": "points_expiring", "op": "gte", "value": 10}, "points_expiring needs days"),
        ({"field": "points_expiring", "op": "gte", "value": 1, "days": 0}, "days: must be from 1"),
        ({"field": "birthday", "op": "in_month", "value": 13}, "must be from 1 to 12"),
        ({"field": "birthday", "op": "within_next_days", "value": 400}, "from 0 to 366"),
        ({"field": "lifetime_spend", "op": "gt", "value": "1.999"}, "at most two decimals"),
        ({"field": "lifetime_spend", "op": "gt", "value": "NaN"}, "must be an amount"),
        ({"field": "redeemed", "op": "ever", "value": 3}, "takes no value"),
        ({"field": "redeemed", "op": "within_days", "value": 0}, "must be from 1"),
        ({"field": "sms_status", "op": "is", "value": "maybe"}, "must be one of none, pending"),
        ({"field": "sms_status", "op": "in", "value": []}, "must be a list of 1 to"),
        ({"field": "country", "op": "is", "value": "usa"}, "ISO 3166 country code"),
        ({"field": "timezone", "op": "is", "value": "Mars/Olympus"}, "IANA time zone"),
        ({"field": "received", "op": "ever", "kind": "spam"}, "kind: must be one of"),
        ({"field": "member", "op": "is", "value": "yes"}, "must be true or false"),
        ({"field": "member", "op": "is", "value": True, "colour": 1}, "unknown key(s) colour"),
        ({"op": "is", "value": 1}, "not a rule: give all, any or not"),
        ({"all": [], "any": []}, "a group has exactly one key"),
        ({"all": {"field": "member"}}, "all: must be a list of rules"),
        ([{"field": "member", "op": "is", "value": True}], "must be an object"),
        ("everyone", "must be an object"),
    ],
)
def test_bad_trees_are_refused_with_a_specific_message(rules, message):
    found = problems(rules)
    assert any(message in problem for problem in found), found


def test_every_problem_is_listed_with_its_path():
    found = problems(
        {
            "all": [
                {"field": "member", "op": "is", "value": True},
                {"any": [{"field": "nope", "op": "is", "value": 1}]},
                {"not": {"field": "points_balance", "op": "gte", "value": "x"}},
            ]
        }
    )
    assert len(found) == 2
    assert found[0].startswith("all[1].any[0].field: unknown field 'nope'")
    assert found[1].startswith("all[2].not.value: points_balance gte must be a whole number")


def test_nesting_too_deep_is_refused():
    node = {"field": "member", "op": "is", "value": True}
    for _ in range(MAX_DEPTH):
        node = {"not": node}
    validate_rules(node)  # exactly at the limit
    found = problems({"all": [node]})
    assert any("groups nest too deep" in problem for problem in found), found


def test_too_many_conditions_are_refused():
    leaf = {"field": "orders_count", "op": "gte", "value": 1}
    validate_rules({"any": [leaf] * MAX_CONDITIONS})
    found = problems({"any": [leaf] * (MAX_CONDITIONS + 1)})
    assert found == [f"any[{MAX_CONDITIONS}]: too many conditions (at most {MAX_CONDITIONS})"]


def test_a_valid_tree_is_cleaned():
    cleaned = validate_rules(
        {"any": [{"field": "lifetime_spend", "op": "between", "value": [10, "20.5"]}]}
    )
    assert str(cleaned["any"][0]["value"][1]) == "20.5"


def test_another_brands_tier_is_refused_and_no_segment_sql_runs(alice_brand, charlie_brand):
    with tenant_scope(charlie_brand.tenant):
        gold = tier_create(
            tenant=charlie_brand.tenant,
            name="Gold",
            threshold=300,
            basis="points_earned",
            period="lifetime",
        )
    rules = {"field": "tier", "op": "at_least", "value": gold.pk}
    for run in (
        lambda: segment_count(alice_brand.tenant, rules),
        lambda: segment_sample(alice_brand.tenant, rules, 5),
        lambda: segment_subscriber_ids_sql(alice_brand.tenant, rules),
    ):
        with CaptureQueriesContext(connection) as queries, pytest.raises(RulesInvalid) as caught:
            run()
        assert caught.value.problems == [f"rules.value: no tier with id {gold.pk}"]
        # Only the brand's tier ids were read: the tree never reached SQL.
        assert all("programs_member" not in q["sql"] for q in queries.captured_queries)
    assert segment_count(charlie_brand.tenant, rules, now=timezone.now()) == 0
