"""The fan-out's bulk rendering makes exactly the texts message_create's compose would:
random templates and values (Hypothesis) through both, and the set-based tag values next to
programs' own personalization selector."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from loyaltysms.tenancy.context import tenant_scope
from messaging import encoding
from messaging.models import MessageKind, MessagingSettings
from messaging.services.bulk import (
    BulkComposer,
    LinkShortener,
    recipient_values,
    segment_info_fast,
)
from messaging.services.outbound import CODE_ALPHABET, CODE_LENGTH, compose
from programs.models import Member
from programs.selectors import personalization

from .conftest import NOON

PIECES = st.sampled_from(
    [
        "Hi ",
        "{first_name}",
        "{first_name|friend}",
        "{points_balance|0}",
        "{vip_tier}",
        "{brand}",
        "{{literal}}",
        " https://shop.test/x?a=1.",
        "{link:https://shop.test/y}",
        " STOP ",
        "é",
        "€",
        "😀",
        "“quoted”",
        "\n",
        "x" * 150,
        "{next_tier|none}",
    ]
)
VALUES = st.lists(
    st.sampled_from([*"abcXYZ {}|€é😀\x00\x01", "http://a.b/c", "STOP"]), max_size=8
).map("".join)


def shorten(url: str) -> str:
    return f"https://s.test/{len(url)}"


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(PIECES, min_size=1, max_size=8),
    values=st.dictionaries(
        st.sampled_from(["first_name", "points_balance", "vip_tier", "brand", "next_tier"]),
        VALUES,
    ),
    kind=st.sampled_from([MessageKind.MARKETING, MessageKind.TRANSACTIONAL]),
    footer=st.booleans(),
    smart=st.booleans(),
)
def test_bulk_compose_equals_compose(parts, values, kind, footer, smart):
    template = "Sale " + "".join(parts)
    brand_settings = MessagingSettings(opt_out_footer=footer, smart_encoding=smart)
    bulk = BulkComposer(template, kind=kind, settings=brand_settings, brand="Bakery")
    text, info = bulk.compose(values, shorten)
    expected = compose(
        template,
        values={"brand": "Bakery", **values},
        kind=kind,
        settings=brand_settings,
        shorten=shorten,
    )
    assert (text, info) == (expected.text, expected.info)


@settings(max_examples=500, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from([*"abc 0123@£\n{}[]~^€|\\", "é", "ж", "😀", "“"]),
        max_size=400,
    )
)
def test_fast_segment_count_equals_the_exact_one(text):
    assert segment_info_fast(text) == encoding.segment_info(text)


def test_set_based_values_equal_the_personalization_selector(audience):
    tenant = audience.tenant
    with tenant_scope(tenant):
        members = list(Member.objects.select_related("tier").order_by("id"))
        from messaging.models import Subscriber

        numbers = {s.member_id: s.pk for s in Subscriber.objects.filter(member__isnull=False)}
    assert any(m.tier_id for m in members) and any(not m.tier_id for m in members)
    rows = [
        (numbers[m.pk], m.pk, m.first_name, m.last_name, m.points_balance, m.tier and m.tier.name)
        for m in members
        if m.pk in numbers
    ]
    expected = personalization(tenant, members, NOON + timedelta(days=1))
    row_tags = {"first_name", "last_name", "points_balance", "vip_tier", "points_name"}
    fast = recipient_values(tenant, rows, tags=row_tags, now=NOON)
    full = recipient_values(tenant, rows, tags={"next_tier", "first_name"}, now=NOON)
    for subscriber_id, member_id, *_ in rows:
        wanted = expected[member_id]
        assert fast[subscriber_id] == {tag: wanted[tag] for tag in row_tags}
        assert full[subscriber_id] == wanted


def test_pooled_link_codes_look_like_single_ones():
    shortener = LinkShortener()
    codes = [shortener.new_code() for _ in range(5000)]
    assert len(set(codes)) == len(codes)
    assert all(len(c) == CODE_LENGTH and set(c) <= set(CODE_ALPHABET) for c in codes)
    # Every letter and digit turns up (uniform over 62: each ~565 times in 35,000).
    assert set("".join(codes)) == set(CODE_ALPHABET)
