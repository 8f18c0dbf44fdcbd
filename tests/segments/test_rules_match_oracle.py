"""Each rule type, and trees of them, select exactly the people (and numbers) the Python oracle
in conftest.py computes over the same brand; nothing of the outsider brand ever matches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyaltysms.tenancy.context import tenant_scope
from programs.models import Member
from segments import compiler
from segments.rules import FIELDS, conditions, validate_rules
from segments.selectors import (
    SAMPLE_MAX,
    segment_count,
    segment_sample,
    segment_subscriber_ids_sql,
    segment_subscribers,
)

from .conftest import World, expected, holds, pairs, person_key

pytestmark = pytest.mark.django_db

EVERYONE = {"all": []}


def people(world: World, rules: dict, now=None) -> set:
    """Every matching person, through the compiler's people query (no limit)."""
    compiled = compiler.people_sql(
        world.tenant, validate_rules(rules), now or world.now, limit=10_000
    )
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, compiled.params)
        rows = cursor.fetchall()
    assert len(rows) == len(set(rows)), "a person listed twice"
    return {("member", m) if m else ("subscriber", s) for m, s in rows}


def numbers(world: World, rules: dict, *, subscribed_only: bool, now=None) -> list[int]:
    sql, params = segment_subscriber_ids_sql(
        world.tenant, rules, now=now or world.now, subscribed_only=subscribed_only
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def lowest_numbers(world: World, rules: dict, now) -> dict:
    """Each matching person → their number (a member: the lowest id of their matching numbers;
    None when matched without one or when the tree reads no SMS data), as the sample shows."""
    reads_numbers = any(FIELDS[c["field"]].level == "subscriber" for c in conditions(rules))
    lowest: dict = {}
    for member, subscriber in pairs(world.data):
        if holds(rules, member, subscriber, world.data, now, world.tenant):
            key = person_key(member, subscriber)
            shown = subscriber is not None and (reads_numbers or member is None)
            number = subscriber.pk if shown else None
            if key not in lowest or (number is not None and number < lowest[key]):
                lowest[key] = number
    return lowest


def check_sample(world: World, rules: dict, now=None) -> None:
    """The sample (all of it: the brand is smaller than SAMPLE_MAX) lists each matching person
    once, newest first, with their lowest matching number."""
    now = now or world.now
    sample = segment_sample(world.tenant, rules, SAMPLE_MAX, now=now)
    found = {
        person_key(p.member, p.subscriber): p.subscriber.pk if p.subscriber else None
        for p in sample
    }
    assert len(found) == len(sample), "a person listed twice"
    assert found == lowest_numbers(world, rules, now), rules
    order = [
        (p.member.created_at, p.member.pk) if p.member else (p.subscriber.created_at, 0)
        for p in sample
    ]
    assert [at for at, _ in order] == sorted((at for at, _ in order), reverse=True)


def check(world: World, rules: dict, now=None) -> None:
    want = expected(world, rules, now)
    assert people(world, rules, now) == want.people, rules
    check_sample(world, rules, now)
    assert segment_count(world.tenant, rules, now=now or world.now) == len(want.people), rules
    found = numbers(world, rules, subscribed_only=False, now=now)
    assert len(found) == len(set(found)), "a number listed twice"
    assert set(found) == want.numbers, rules
    assert set(numbers(world, rules, subscribed_only=True, now=now)) == want.subscribed_numbers


def cases(tiers: dict[str, int]) -> dict[str, dict]:
    gold, silver = tiers["Gold"], tiers["Silver"]

    def c(field, op, value=None, **extra):
        node = {"field": field, "op": op, **extra}
        if value is not None:
            node["value"] = value
        return node

    return {
        "member is true": c("member", "is", True),
        "member is false": c("member", "is", False),
        "tier is": c("tier", "is", gold),
        "tier is not": c("tier", "is_not", gold),
        "tier at least silver": c("tier", "at_least", silver),
        "tier at least gold": c("tier", "at_least", gold),
        "balance gte": c("points_balance", "gte", 200),
        "balance lt": c("points_balance", "lt", 100),
        "balance between": c("points_balance", "between", [10, 300]),
        "balance eq": c("points_balance", "eq", 0),
        "expiring 30 days gt 0": c("points_expiring", "gt", 0, days=30),
        "expiring 7 days gte 100": c("points_expiring", "gte", 100, days=7),
        "expiring 90 days lt 50": c("points_expiring", "lt", 50, days=90),
        "birthday in month": c("birthday", "in_month", 3),
        "birthday within 60 days": c("birthday", "within_next_days", 60),
        "birthday within 365 days": c("birthday", "within_next_days", 365),
        "days since order gte 90": c("days_since_last_order", "gte", 90),
        "days since order lt 30": c("days_since_last_order", "lt", 30),
        "days since order between": c("days_since_last_order", "between", [2, 60]),
        "days since order eq": c("days_since_last_order", "eq", 4),
        "days since order gt": c("days_since_last_order", "gt", 100),
        "days since order lte": c("days_since_last_order", "lte", 1),
        "orders count eq 0": c("orders_count", "eq", 0),
        "orders count gte 2": c("orders_count", "gte", 2),
        "lifetime spend gt": c("lifetime_spend", "gt", "200.00"),
        "lifetime spend between": c("lifetime_spend", "between", [40, 210.5]),
        "redeemed ever": c("redeemed", "ever"),
        "redeemed never": c("redeemed", "never"),
        "redeemed within 10 days": c("redeemed", "within_days", 10),
        "tags has": c("tags", "has", "vip"),
        "tags has any": c("tags", "has_any", ["tea", "lapsed"]),
        "tags has all": c("tags", "has_all", ["vip", "coffee"]),
        "sms status is subscribed": c("sms_status", "is", "subscribed"),
        "sms status is none": c("sms_status", "is", "none"),
        "sms status is not subscribed": c("sms_status", "is_not", "subscribed"),
        "sms status in": c("sms_status", "in", ["pending", "unsubscribed"]),
        "source is": c("subscription_source", "is", "web_form"),
        "source is not": c("subscription_source", "is_not", "keyword"),
        "source in": c("subscription_source", "in", ["checkout", "import"]),
        "subscribed days gte 60": c("subscribed_days", "gte", 60),
        "subscribed days lt 60": c("subscribed_days", "lt", 60),
        "clicked ever": c("clicked", "ever"),
        "clicked never": c("clicked", "never"),
        "clicked within 1 day": c("clicked", "within_days", 1),
        "received within 10 days": c("received", "within_days", 10),
        "received marketing ever": c("received", "ever", kind="marketing"),
        "received never": c("received", "never"),
        "replied within 30 days": c("replied", "within_days", 30),
        "replied ever": c("replied", "ever"),
        "replied never": c("replied", "never"),
        "country is": c("country", "is", "CA"),
        "country is not": c("country", "is_not", "US"),
        "state in": c("state", "in", ["NY", "IL"]),
        "state is": c("state", "is", "CA"),
        "timezone is": c("timezone", "is", "America/Chicago"),
        "timezone is not": c("timezone", "is_not", "America/New_York"),
        "timezone in": c("timezone", "in", ["America/Denver", "Europe/London"]),
    }


CASE_NAMES = list(cases({"Gold": 1, "Silver": 2}))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_rule_matches_the_oracle(world, name):
    rules = cases(world.tiers)[name]
    want = expected(world, rules)
    everyone = expected(world, EVERYONE).people
    # The fixture tells the rule apart from "everyone" and "no one", so a wrong rule fails.
    assert 0 < len(want.people) < len(everyone), (name, want.people)
    check(world, rules)


COMBINATIONS = {
    "vip with expiring points and a number": lambda t: {
        "all": [
            {"field": "tier", "op": "at_least", "value": t["Silver"]},
            {"field": "points_expiring", "op": "gt", "value": 0, "days": 60},
            {"field": "sms_status", "op": "is", "value": "subscribed"},
        ]
    },
    "lapsed or never ordered, not unsubscribed": lambda t: {
        "all": [
            {
                "any": [
                    {"field": "days_since_last_order", "op": "gte", "value": 90},
                    {"field": "orders_count", "op": "eq", "value": 0},
                ]
            },
            {"not": {"field": "sms_status", "op": "is", "value": "unsubscribed"}},
        ]
    },
    "not a member, or never clicked": lambda t: {
        "any": [
            {"field": "member", "op": "is", "value": False},
            {"not": {"field": "clicked", "op": "ever"}},
        ]
    },
    "balance over 100 and never redeemed": lambda t: {
        "all": [
            {"field": "points_balance", "op": "gte", "value": 100},
            {"field": "redeemed", "op": "never"},
        ]
    },
    "nested not of or of and": lambda t: {
        "not": {
            "any": [
                {
                    "all": [
                        {"field": "tags", "op": "has", "value": "vip"},
                        {"field": "country", "op": "is", "value": "US"},
                    ]
                },
                {"field": "replied", "op": "ever"},
                {"not": {"field": "timezone", "op": "is", "value": "America/New_York"}},
            ]
        }
    },
    "number-level: ann's numbers apart": lambda t: {
        "all": [
            {"field": "tags", "op": "has", "value": "coffee"},
            {"field": "subscription_source", "op": "is", "value": "api"},
        ]
    },
}


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_and_or_not_combinations_match_the_oracle(world, name):
    rules = COMBINATIONS[name](world.tiers)
    assert expected(world, rules).people, "the combination should match someone"
    check(world, rules)


ACTIVITY_CASES = [
    "redeemed ever",
    "redeemed never",
    "redeemed within 10 days",
    "clicked ever",
    "clicked never",
    "clicked within 1 day",
    "received within 10 days",
    "received marketing ever",
    "received never",
    "replied within 30 days",
    "replied ever",
    "replied never",
    "expiring 30 days gt 0",
]


@pytest.mark.parametrize("name", ACTIVITY_CASES)
def test_activity_at_the_top_and_inside_a_group_agree(world, name):
    """AND-ed at the top an activity condition is a (NOT) EXISTS; under `any` or `not` it reads
    the grouped join. Both, beside a member condition and a number condition, match the
    oracle."""
    rule = cases(world.tiers)[name]
    grouped = {"any": [rule]}
    assert compiler.count_sql(world.tenant, validate_rules(rule), world.now).sql != (
        compiler.count_sql(world.tenant, validate_rules(grouped), world.now).sql
    )
    for rules in (
        rule,
        grouped,
        {"all": [{"field": "orders_count", "op": "gte", "value": 1}, rule]},
        {"all": [{"field": "sms_status", "op": "is_not", "value": "pending"}, rule]},
        {"all": [{"any": [{"field": "tags", "op": "has", "value": "vip"}]}, {"all": [rule]}]},
    ):
        check(world, rules)


@pytest.mark.parametrize("value", [0, 1, 2, 99, 100, 101])
def test_points_expiring_thresholds_at_the_top(world, value):
    """ "Has points expiring" (gt 0, gte 1) is an EXISTS at the top; other amounts sum."""
    for op in ("gt", "gte", "eq", "lt", "lte"):
        check(world, {"field": "points_expiring", "op": op, "value": value, "days": 60})


NUMBER_OR_NONE = {
    # ann's API number fails, her checkout number matches: she is in.
    "not from the api": {"not": {"field": "subscription_source", "op": "is", "value": "api"}},
    # ann's checkout number fails, her API number matches: she is in.
    "not from checkout": {"not": {"field": "subscription_source", "op": "is", "value": "checkout"}},
    # both of ann's numbers fail: she is out; members without a number are in.
    "not subscribed": {"not": {"field": "sms_status", "op": "is", "value": "subscribed"}},
    "not clicked in 30 days": {"not": {"field": "clicked", "op": "within_days", "value": 30}},
    "not replied, or not a sender": {
        "any": [
            {"not": {"field": "replied", "op": "ever"}},
            {"field": "subscription_source", "op": "is", "value": "web_form"},
        ]
    },
}


@pytest.mark.parametrize("name", list(NUMBER_OR_NONE))
def test_a_matching_number_or_none_at_all(world, name):
    """Number conditions that also hold without a number: a member is in with one matching
    number, or none; one failing number doesn't keep out a member whose other number
    matches."""
    with tenant_scope(world.tenant):
        ann = Member.objects.get(external_id="ann")
        kim = Member.objects.get(external_id="kim")  # a member without a number
    rules = {"all": [{"field": "tags", "op": "has", "value": "vip"}, NUMBER_OR_NONE[name]]}
    want = expected(world, rules).people
    assert ("member", kim.pk) in want
    if name.startswith("not from"):
        assert ("member", ann.pk) in want
    if name == "not subscribed":
        assert ("member", ann.pk) not in want
    check(world, rules)


def test_sample_shows_the_lowest_matching_number(world):
    with tenant_scope(world.tenant):
        ann = Member.objects.get(external_id="ann")
    numbers_of_ann = sorted(s.pk for s in world.data["subscribers"] if s.member_id == ann.pk)
    api = {"field": "subscription_source", "op": "is", "value": "api"}
    vip_coffee = {"field": "tags", "op": "has_all", "value": ["vip", "coffee"]}
    for rules, number in (
        ({"all": [vip_coffee, api]}, numbers_of_ann[1]),
        ({"all": [vip_coffee, {"not": api}]}, numbers_of_ann[0]),
        ({"all": [vip_coffee, {"field": "sms_status", "op": "is", "value": "subscribed"}]}, None),
        # member and number data mixed below the top: the (member, number) pairs path
        ({"any": [{"all": [vip_coffee, api]}, {"all": [vip_coffee, {"not": api}]}]}, None),
    ):
        sample = segment_sample(world.tenant, rules, 10, now=world.now)
        assert [p.member.pk for p in sample] == [ann.pk]
        assert sample[0].subscriber.pk == (number or numbers_of_ann[0])
        check(world, rules)


def test_empty_groups_are_everyone_and_no_one(world):
    everyone = expected(world, EVERYONE).people
    assert len(everyone) == len(world.data["members"]) + sum(
        1 for s in world.data["subscribers"] if s.member_id is None
    )
    check(world, EVERYONE)
    assert segment_count(world.tenant, {"any": []}, now=world.now) == 0
    assert people(world, {"any": []}) == set()
    assert segment_count(world.tenant, {"not": {"all": []}}, now=world.now) == 0


def test_a_member_with_two_numbers_is_one_person_with_two_numbers(world):
    with tenant_scope(world.tenant):
        ann = Member.objects.get(external_id="ann")
    rules = {"field": "tags", "op": "has_all", "value": ["vip", "coffee"]}
    assert people(world, rules) == {("member", ann.pk)}
    assert segment_count(world.tenant, rules, now=world.now) == 1
    assert len(numbers(world, rules, subscribed_only=True)) == 2
    # A condition on one of the numbers selects that number only.
    api_only = {"all": [rules, {"field": "subscription_source", "op": "is", "value": "api"}]}
    assert segment_count(world.tenant, api_only, now=world.now) == 1
    assert len(numbers(world, api_only, subscribed_only=True)) == 1


@pytest.mark.parametrize("days_later", [0, 20, 45, 100, 300])
def test_results_follow_the_clock(world, days_later):
    """The same trees evaluated at other moments (windows slide with `now`)."""
    now = world.now + timedelta(days=days_later)
    for name in (
        "expiring 30 days gt 0",
        "birthday within 60 days",
        "days since order between",
        "redeemed within 10 days",
        "received within 10 days",
        "subscribed days lt 60",
    ):
        check(world, cases(world.tiers)[name], now=now)


def test_the_outsider_brand_never_matches(world):
    """charlie's brand holds the same people; none of them is ever counted, listed or texted."""
    with tenant_scope(world.outsider):
        outsider_members = set(Member.objects.values_list("id", flat=True))
    everyone = people(world, EVERYONE)
    assert everyone == expected(world, EVERYONE).people
    assert not {("member", m) for m in outsider_members} & everyone
    subscribers = segment_subscribers(world.tenant, EVERYONE, now=world.now, subscribed_only=False)
    with tenant_scope(world.tenant):
        found = set(subscribers.values_list("id", flat=True))
    assert found == {s.pk for s in world.data["subscribers"]}
    # The outsider's own count of the same tree is its own people only.
    assert segment_count(world.outsider, EVERYONE, now=world.now) == len(everyone)


def test_sample_lists_matching_people_newest_first(world):
    rules = {"field": "member", "op": "is", "value": True}
    sample = segment_sample(world.tenant, rules, 5, now=world.now)
    assert len(sample) == 5
    assert all(p.member is not None and p.member.tenant_id == world.tenant.pk for p in sample)
    created = [p.member.created_at for p in sample]
    assert created == sorted(created, reverse=True)
    full = segment_sample(world.tenant, EVERYONE, 100, now=world.now)
    assert {person_key(p.member, p.subscriber) for p in full} == expected(world, EVERYONE).people


# --- random trees ----------------------------------------------------------------------
def leaves(tiers: dict[str, int]):
    ints = st.integers(min_value=0, max_value=700)
    days = st.integers(min_value=0, max_value=400)

    def cmp(field, values, **extra):
        single = st.fixed_dictionaries(
            {
                "field": st.just(field),
                "op": st.sampled_from(["eq", "gt", "gte", "lt", "lte"]),
                "value": values,
                **extra,
            }
        )
        ranged = st.fixed_dictionaries(
            {
                "field": st.just(field),
                "op": st.just("between"),
                "value": st.lists(values, min_size=2, max_size=2).map(sorted),
                **extra,
            }
        )
        return single | ranged

    def activity(field, **extra):
        return st.fixed_dictionaries(
            {"field": st.just(field), "op": st.sampled_from(["ever", "never"]), **extra}
        ) | st.fixed_dictionaries(
            {
                "field": st.just(field),
                "op": st.just("within_days"),
                "value": st.integers(min_value=1, max_value=120),
                **extra,
            }
        )

    def choice(field, values):
        return st.fixed_dictionaries(
            {"field": st.just(field), "op": st.sampled_from(["is", "is_not"]), "value": values}
        ) | st.fixed_dictionaries(
            {
                "field": st.just(field),
                "op": st.just("in"),
                "value": st.lists(values, min_size=1, max_size=3),
            }
        )

    tier_ids = st.sampled_from(sorted(tiers.values()))
    return st.one_of(
        st.fixed_dictionaries(
            {"field": st.just("member"), "op": st.just("is"), "value": st.booleans()}
        ),
        st.fixed_dictionaries(
            {
                "field": st.just("tier"),
                "op": st.sampled_from(["is", "is_not", "at_least"]),
                "value": tier_ids,
            }
        ),
        cmp("points_balance", ints),
        cmp("points_expiring", ints, days=st.integers(min_value=1, max_value=120)),
        st.fixed_dictionaries(
            {"field": st.just("birthday"), "op": st.just("in_month"), "value": st.integers(1, 12)}
        ),
        st.fixed_dictionaries(
            {
                "field": st.just("birthday"),
                "op": st.just("within_next_days"),
                "value": st.integers(0, 366),
            }
        ),
        cmp("days_since_last_order", days),
        cmp("orders_count", st.integers(min_value=0, max_value=3)),
        cmp("lifetime_spend", st.integers(min_value=0, max_value=600)),
        activity("redeemed"),
        st.fixed_dictionaries(
            {
                "field": st.just("tags"),
                "op": st.just("has"),
                "value": st.sampled_from(["vip", "tea", "coffee", "lapsed", "none"]),
            }
        ),
        st.fixed_dictionaries(
            {
                "field": st.just("tags"),
                "op": st.sampled_from(["has_any", "has_all"]),
                "value": st.lists(
                    st.sampled_from(["vip", "tea", "coffee", "lapsed"]), min_size=1, max_size=3
                ),
            }
        ),
        choice("sms_status", st.sampled_from(["subscribed", "pending", "unsubscribed", "none"])),
        choice(
            "subscription_source",
            st.sampled_from(["keyword", "web_form", "checkout", "import", "api", "loyalty_page"]),
        ),
        cmp("subscribed_days", days),
        activity("clicked"),
        activity("received"),
        activity("received", kind=st.sampled_from(["marketing", "transactional"])),
        activity("replied"),
        choice("country", st.sampled_from(["US", "CA", "GB"])),
        choice("state", st.sampled_from(["NY", "IL", "CA", "ON", "TX"])),
        choice(
            "timezone",
            st.sampled_from(
                [
                    "America/New_York",
                    "America/Chicago",
                    "America/Denver",
                    "America/Los_Angeles",
                    "Europe/London",
                ]
            ),
        ),
    )


def trees(tiers: dict[str, int]):
    return st.recursive(
        leaves(tiers),
        lambda children: st.one_of(
            st.fixed_dictionaries({"all": st.lists(children, max_size=4)}),
            st.fixed_dictionaries({"any": st.lists(children, max_size=4)}),
            st.fixed_dictionaries({"not": children}),
        ),
        max_leaves=10,
    )


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_trees_match_the_oracle(world, data):
    rules = data.draw(trees(world.tiers), label="rules")
    offset = data.draw(st.integers(min_value=-30, max_value=200), label="days later")
    check(world, rules, now=world.now + timedelta(days=offset))
