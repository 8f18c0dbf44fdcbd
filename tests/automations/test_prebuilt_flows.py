"""Each prebuilt flow installed and switched on, driven with a fake clock through the real
outbox, date scans, flow engine, dispatcher and sandbox gateway: who got which text, when
(in the brand's local time, inside the sending window and the cap), and who got none."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from automations.flows.prebuilt import CATALOGUE, TAG_WINBACK_ACTIVE, TAG_WINBACK_SUNSET
from automations.flows.spec import FlowInvalid, Problems, check_exits, check_steps, check_trigger
from automations.models import Flow, FlowRun, FlowStatus, RunStatus
from automations.services.flow_install import flow_install, prebuilt_catalogue
from automations.services.flow_scans import flow_scans_run
from automations.services.flow_work import flows_work_once
from automations.services.flows import flow_set_status
from loyaltysms.tenancy.context import tenant_scope
from messaging import encoding, rendering
from messaging.models import (
    ConsentRecord,
    MessageStatus,
    OutboundMessage,
    Subscriber,
    SubscriberStatus,
)
from messaging.services.dispatch import dispatch_due
from messaging.services.setup import messaging_settings_get
from programs.models import Member, PointsEntry, PointsLot, Redemption, Reward
from programs.services.members import Birthday
from programs.services.orders import order_record
from programs.services.program import program_get, program_update, reward_create, tier_create
from programs.services.rewards import redemption_create

from .conftest import Clock, in_new_york, join, subscribe_number, tap_link

NY = ZoneInfo("America/New_York")
SHOP = "https://alices.example/shop"
SURVEY = "https://alices.example/survey"
# Wednesday 10 June 2026, 14:00 in New York.
T0 = datetime(2026, 6, 10, 18, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def brand(alice_brand):
    return in_new_york(alice_brand.tenant)


# --- the world, through the real services ---------------------------------------------------


def member(tenant, n: int, at: datetime, *, subscribe: bool = True, **profile) -> Member:
    return join(tenant, n, at, subscribe=subscribe, **{"last_name": "", **profile})


def order(tenant, who: Member, at: datetime, amount: int, ref: str) -> None:
    order_record(
        tenant=tenant,
        order_id=ref,
        member_external_id=who.external_id,
        subtotal=Decimal(amount),
        currency="USD",
        now=at,
        placed_at=at,
    )


def install(tenant, clock: Clock, key: str, **links) -> Flow:
    flow = flow_install(tenant=tenant, key=key, now=clock(), **links)
    assert flow.status == FlowStatus.DRAFT and flow.template == key
    return flow_set_status(flow=flow, status="live", now=clock())


def tick(tenant, clock: Clock) -> None:
    """What the workers do at this moment: date scans, events and due runs, the dispatcher."""
    flow_scans_run(now=clock(), tenant=tenant)
    flows_work_once(tenant=tenant, now=clock)
    dispatch_due(now=clock)


def days_at(tenant, clock: Clock, last: date, hours: tuple[int, ...]) -> None:
    """Every day up to `last`, tick at these local hours (the clock only moves forward)."""
    day = clock().astimezone(NY).date()
    while day <= last:
        for hour in hours:
            moment = datetime.combine(day, time(hour), tzinfo=NY)
            if moment >= clock():
                clock.to_local(day, hour)
                tick(tenant, clock)
        day += timedelta(days=1)


def texts_to(tenant, flow: Flow) -> dict[str, list[OutboundMessage]]:
    """The flow's texts by the recipient's number, in order."""
    found: dict[str, list[OutboundMessage]] = {}
    with tenant_scope(tenant):
        for text in OutboundMessage.objects.filter(source="flow", source_ref=str(flow.pk)).order_by(
            "id"
        ):
            found.setdefault(text.to, []).append(text)
    return found


def phone(n: int) -> str:
    return f"+1212555{n:04d}"


def sent_at_local(text: OutboundMessage) -> datetime:
    assert text.status == MessageStatus.SENT, (text.status, text.status_reason)
    return text.sent_at.astimezone(NY).replace(tzinfo=None)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute))


def runs_of(tenant, flow: Flow) -> list[FlowRun]:
    with tenant_scope(tenant):
        return list(FlowRun.objects.filter(flow=flow).order_by("id"))


def fresh(tenant, model, pk):
    with tenant_scope(tenant):
        return model.objects.get(pk=pk)


def reward(tenant, name: str = "Free cookie", cost: int = 100) -> Reward:
    return reward_create(
        tenant=tenant, name=name, kind="free_product", points_cost=cost, value="CK1"
    )


def program_settings(tenant, **changes) -> None:
    with tenant_scope(tenant):
        program_update(program=program_get(tenant), **changes)


def everything_set_up(tenant) -> None:
    """What the pickiest prebuilt flows need: a reward, tiers, an SMS bonus, expiring points."""
    reward(tenant)
    with tenant_scope(tenant):
        tier_create(
            tenant=tenant, name="Gold", threshold=Decimal(500), basis="points_earned",
            period="lifetime", perks="Free shipping on every order.",
        )  # fmt: skip
    program_settings(tenant, sms_bonus=50, expiry_policy="lot", expiry_days=60)


# --- the catalogue ----------------------------------------------------------------------------


def test_every_prebuilt_flow_passes_the_spec_with_short_plain_copy(brand, clock):
    everything_set_up(brand)
    settings = messaging_settings_get(brand)
    for prebuilt in CATALOGUE:
        flow = flow_install(
            tenant=brand, key=prebuilt.key, now=clock(), shop_url=SHOP, survey_url=SURVEY
        )
        problems = Problems({})
        check_trigger(flow.trigger, problems)
        with tenant_scope(brand):
            reward_ids = set(Reward.objects.values_list("id", flat=True))
        check_steps(flow.steps, problems, reward_ids=reward_ids)
        check_exits(flow.exit_on, problems)
        assert problems.found == {}, (prebuilt.key, problems.found)
        assert flow.description == prebuilt.description and len(prebuilt.description) > 150
        bodies = [s["body"] for s in flow.steps["steps"].values() if s["type"] == "send_sms"]
        assert bodies, prebuilt.key
        for body in bodies:
            assert body.startswith("{brand}: "), body
            sample = rendering.render(body, {**rendering.SAMPLE, "brand": "Alice's Bakery"})
            text = rendering.with_footer(
                rendering.replace_urls(sample, lambda url: "https://lsms.io/l/AbC123x"),
                settings.footer_text,
            )
            info = encoding.segment_info(text)
            assert info.encoding == encoding.GSM7, (prebuilt.key, text)
            assert info.segments <= 2, (prebuilt.key, info.segments, text)
    keys = [entry.key for entry in prebuilt_catalogue(brand)]
    assert keys == [p.key for p in CATALOGUE] and len(keys) == 11


def test_install_refuses_clearly_until_the_brand_has_what_the_flow_needs(brand, clock):
    catalogue = {entry.key: entry for entry in prebuilt_catalogue(brand)}
    assert catalogue["post_purchase"].installable
    assert not catalogue["birthday_reward"].installable
    assert "Create a reward first" in catalogue["birthday_reward"].missing[0]
    assert "Create a tier first" in catalogue["vip_upgrade"].missing[0]
    assert "SMS bonus" in catalogue["sms_bonus"].missing[0]
    assert "never expire" in catalogue["points_expiring_30"].missing[0]
    assert catalogue["winback"].links == ("shop_url", "survey_url")

    with pytest.raises(FlowInvalid) as refused:
        flow_install(tenant=brand, key="birthday_reward", now=clock())
    assert "can't be installed yet" in refused.value.detail
    assert "Create a reward first" in refused.value.errors["brand"][0]
    with pytest.raises(FlowInvalid) as refused:
        flow_install(tenant=brand, key="vip_upgrade", now=clock())
    assert "Create a tier first" in refused.value.errors["brand"][0]
    with pytest.raises(FlowInvalid) as refused:
        flow_install(tenant=brand, key="welcome_series", now=clock())
    assert list(refused.value.errors) == ["shop_url"]
    with pytest.raises(FlowInvalid) as refused:
        flow_install(tenant=brand, key="welcome_series", now=clock(), shop_url="shop {x}")
    assert "https://" in refused.value.errors["shop_url"][0]
    with pytest.raises(FlowInvalid) as refused:
        flow_install(tenant=brand, key="nope", now=clock())
    assert refused.value.errors == {"key": ["no such flow"]}
    with tenant_scope(brand):
        assert not Flow.objects.exists()

    everything_set_up(brand)
    assert all(entry.installable for entry in prebuilt_catalogue(brand))
    first = flow_install(tenant=brand, key="post_purchase", now=clock())
    second = flow_install(tenant=brand, key="post_purchase", now=clock())
    assert (first.name, second.name) == (
        "Post-purchase points update",
        "Post-purchase points update (2)",
    )
    assert {e.key: e.installed for e in prebuilt_catalogue(brand)}["post_purchase"] == 2


def test_the_brands_own_reward_and_points_name_are_written_in_literally(brand, clock):
    reward(brand, name="Free {big} cookie", cost=300)
    cheap = reward(brand, name="Tea", cost=50)
    program_settings(brand, points_name="beans")
    flow = flow_install(tenant=brand, key="winback", now=clock(), shop_url=SHOP, survey_url=SURVEY)
    steps = flow.steps["steps"]
    assert steps["coupon"]["reward_id"] == cheap.pk
    assert "giving away a Tea." in steps["contest"]["body"]
    invite = flow_install(tenant=brand, key="welcome_series", now=clock(), shop_url=SHOP)
    assert "earn beans on every order" in invite.steps["steps"]["invite"]["body"]


# --- event-triggered flows ----------------------------------------------------------------


def test_welcome_series_greets_at_once_then_invites_non_members_two_days_later(brand, clock):
    flow = install(brand, clock, "welcome_series", shop_url=SHOP)
    ann = member(brand, 1, clock())
    order(brand, ann, clock(), 40, "o1")
    subscribe_number(brand, 2, clock())  # a walk-in: subscribed, not a member
    member(brand, 3, clock(), subscribe=False)  # a member without consent: never texted
    tick(brand, clock)
    texts = texts_to(brand, flow)
    assert set(texts) == {phone(1), phone(2)}
    for number in (phone(1), phone(2)):
        (hello,) = texts[number]
        assert sent_at_local(hello) == local(date(2026, 6, 10), 14)
        assert "alices.example" not in hello.body  # a tracked link
    assert texts[phone(1)][0].body.startswith("Alice's Bakery: Welcome, Pat1! Thanks for")
    assert texts[phone(2)][0].body.startswith("Alice's Bakery: Welcome, friend! Thanks for")
    assert texts[phone(1)][0].body.endswith("Reply STOP to opt out")

    days_at(brand, clock, date(2026, 6, 15), hours=(9, 10, 11, 12))
    texts = texts_to(brand, flow)
    ann_points, walk_in_invite = texts[phone(1)][1], texts[phone(2)][1]
    assert ann_points.body.startswith("Alice's Bakery: Pat1, you have 40 points with us.")
    assert walk_in_invite.body.startswith(
        "Alice's Bakery: Did you know our rewards program is free? Join and earn points"
    )
    # Two days on (14:00 on the 12th), then the next 11:00.
    assert sent_at_local(ann_points) == local(date(2026, 6, 13), 11)
    assert sent_at_local(walk_in_invite) == local(date(2026, 6, 13), 11)
    assert [len(t) for t in texts.values()] == [2, 2]
    assert {r.status for r in runs_of(brand, flow)} == {RunStatus.DONE}


def test_loyalty_invite_waits_a_week_and_reminds_only_those_who_did_not_tap(brand, clock):
    program_settings(brand, enrollment_bonus=100)
    flow = install(brand, clock, "loyalty_join_invite", shop_url=SHOP)
    subscribe_number(brand, 1, clock())
    subscribe_number(brand, 2, clock())
    member(brand, 3, clock())  # a member: not invited to what they have
    tick(brand, clock)
    assert texts_to(brand, flow) == {}
    days_at(brand, clock, date(2026, 6, 18), hours=(12,))
    texts = texts_to(brand, flow)
    assert set(texts) == {phone(1), phone(2)}
    invite = texts[phone(1)][0]
    # A week on (14:00 on the 17th), then the next noon.
    assert sent_at_local(invite) == local(date(2026, 6, 18), 12)
    assert "Join now and get 100 points to start." in invite.body
    tap_link(brand, invite)
    days_at(brand, clock, date(2026, 6, 30), hours=(12,))
    texts = texts_to(brand, flow)
    assert len(texts[phone(1)]) == 1
    (_, reminder) = texts[phone(2)]
    assert reminder.body.startswith("Alice's Bakery: Your orders could be earning points.")
    assert sent_at_local(reminder) == local(date(2026, 6, 25), 12)


def test_sms_bonus_thanks_a_member_who_subscribes_and_the_bonus_is_paid_once(brand, clock):
    program_settings(brand, sms_bonus=50)
    flow = install(brand, clock, "sms_bonus")
    catalogue = {e.key: e for e in prebuilt_catalogue(brand)}
    assert "storefront" in catalogue["sms_bonus"].description
    ann = member(brand, 1, clock(), subscribe=False)  # a member who isn't subscribed
    tick(brand, clock)
    assert texts_to(brand, flow) == {}  # no consent, no text
    clock.advance(days=3)
    subscribe_number(brand, 1, clock(), member=ann)  # they subscribe on the storefront
    subscribe_number(brand, 2, clock())  # not a member: nothing to thank them for
    tick(brand, clock)
    (thanks,) = texts_to(brand, flow)[phone(1)]
    assert thanks.body.startswith(
        "Alice's Bakery: Thanks for subscribing, Pat1! Your SMS bonus of 50 points is in: "
        "you now have 50 points."
    )
    assert sent_at_local(thanks) == local(date(2026, 6, 13), 14)
    assert set(texts_to(brand, flow)) == {phone(1)}
    with tenant_scope(brand):
        bonuses = list(PointsEntry.objects.filter(member=ann, source="bonus"))
    assert [b.points for b in bonuses] == [50]


def test_vip_upgrade_names_the_tier_and_its_perks_within_the_cap_and_quiet_hours(brand, clock):
    with tenant_scope(brand):
        tier_create(
            tenant=brand, name="Silver", threshold=Decimal(100), basis="points_earned",
            period="lifetime", perks="Free shipping on every order.",
        )  # fmt: skip
        tier_create(
            tenant=brand, name="Gold", threshold=Decimal(500), basis="points_earned",
            period="lifetime",
        )  # fmt: skip
    flow = install(brand, clock, "vip_upgrade")
    ann = member(brand, 1, clock())
    member(brand, 2, clock())  # never moves up
    tick(brand, clock)
    order(brand, ann, clock(), 150, "o1")  # Silver
    tick(brand, clock)
    clock.advance(hours=1)
    order(brand, ann, clock(), 400, "o2")  # Gold, an hour later
    tick(brand, clock)  # held: one marketing text per 12 hours, then the night
    clock.to_local(date(2026, 6, 11), 7, 59)
    tick(brand, clock)
    clock.to_local(date(2026, 6, 11), 8, 0)
    tick(brand, clock)
    silver, gold = texts_to(brand, flow)[phone(1)]
    assert silver.body.startswith(
        "Alice's Bakery: Congrats Pat1, you've reached Silver! Free shipping on every order."
    )
    assert gold.body.startswith(
        "Alice's Bakery: Congrats Pat1, you've reached Gold! Thanks for being one of our"
    )
    assert sent_at_local(silver) == local(date(2026, 6, 10), 14)
    assert sent_at_local(gold) == local(date(2026, 6, 11), 8)
    assert set(texts_to(brand, flow)) == {phone(1)}


def test_post_purchase_update_an_hour_after_each_order_held_to_the_morning_at_night(brand, clock):
    program_settings(brand, pending_days=14)
    flow = install(brand, clock, "post_purchase")
    ann = member(brand, 1, clock())
    bo = member(brand, 2, clock())
    cy = member(brand, 3, clock(), subscribe=False)
    order(brand, ann, clock(), 30, "o1")
    order(brand, cy, clock(), 30, "o3")
    tick(brand, clock)
    assert texts_to(brand, flow) == {}
    clock.advance(hours=1)
    tick(brand, clock)
    clock.to_local(date(2026, 6, 10), 20, 30)
    order(brand, bo, clock(), 80, "o2")
    tick(brand, clock)
    clock.to_local(date(2026, 6, 10), 21, 30)
    tick(brand, clock)  # made now, held by quiet hours
    clock.to_local(date(2026, 6, 11), 8, 0)
    tick(brand, clock)
    texts = texts_to(brand, flow)
    assert set(texts) == {phone(1), phone(2)}  # Cy has no consent
    (ann_text,) = texts[phone(1)]
    assert ann_text.body.startswith(
        "Alice's Bakery: Thanks for your order, Pat1! You have 0 points to spend on rewards. "
        "Points from this order are added after our 14-day return window."
    )
    assert sent_at_local(ann_text) == local(date(2026, 6, 10), 15)
    (bo_text,) = texts[phone(2)]
    assert sent_at_local(bo_text) == local(date(2026, 6, 11), 8)


# --- date-triggered flows -----------------------------------------------------------------


def test_birthday_reward_gives_a_code_at_ten_on_the_day_once_a_year(brand, clock):
    gift = reward(brand, name="Free cookie")
    flow = install(brand, clock, "birthday_reward")
    ann = member(brand, 1, clock(), birthday=Birthday(month=6, day=12))
    member(brand, 2, clock(), birthday=Birthday(month=6, day=20))
    member(brand, 3, clock())  # no birthday on file
    clock.to_local(date(2026, 6, 12), 9, 59)
    tick(brand, clock)
    assert texts_to(brand, flow) == {}
    days_at(brand, clock, date(2026, 6, 14), hours=(10, 11, 15))
    (wish,) = texts_to(brand, flow)[phone(1)]
    with tenant_scope(brand):
        (code,) = Redemption.objects.filter(member=ann, reward=gift)
    assert code.points_spent == 0
    assert wish.body.startswith(
        f"Alice's Bakery: Happy birthday, Pat1! Your gift from us: Free cookie. "
        f"Use code {code.code} on your next order."
    )
    assert sent_at_local(wish) == local(date(2026, 6, 12), 10)
    assert set(texts_to(brand, flow)) == {phone(1)}
    assert len(runs_of(brand, flow)) == 1


def test_points_expiring_warns_thirty_and_seven_days_ahead_and_not_about_points_spent(brand, clock):
    reward(brand, name="Free cookie", cost=100)
    program_settings(brand, expiry_policy="lot", expiry_days=60)
    month = install(brand, clock, "points_expiring_30", shop_url=SHOP)
    week = install(brand, clock, "points_expiring_7", shop_url=SHOP)
    ann = member(brand, 1, clock())
    bo = member(brand, 2, clock())
    order(brand, ann, clock(), 120, "o1")
    order(brand, bo, clock(), 120, "o2")
    with tenant_scope(brand):
        (lot,) = PointsLot.objects.filter(member=ann)
    # Earned on 10 June, kept 60 days: they expire as 10 August begins in New York.
    assert lot.expires_at == datetime(2026, 8, 10, tzinfo=NY)
    days_at(brand, clock, date(2026, 7, 20), hours=(10,))
    heads_up = {number: texts[0] for number, texts in texts_to(brand, month).items()}
    assert set(heads_up) == {phone(1), phone(2)}
    # 30 days ahead: the first morning they are within 30 days of expiring.
    assert sent_at_local(heads_up[phone(1)]) == local(date(2026, 7, 11), 10)
    assert heads_up[phone(1)].body.startswith(
        "Alice's Bakery: Heads up, Pat1: 120 points expire on Aug 10. Spend them on a reward"
    )
    with tenant_scope(brand):
        cookie = Reward.objects.get(name="Free cookie")
    with tenant_scope(brand):
        redemption_create(member=fresh(brand, Member, bo.pk), reward=cookie, now=clock())
    days_at(brand, clock, date(2026, 8, 12), hours=(10,))
    last_call = texts_to(brand, week)
    # Bo spent 100 of his 120: he is told about the 20 left, Ann about her 120.
    assert set(last_call) == {phone(1), phone(2)}
    assert sent_at_local(last_call[phone(1)][0]) == local(date(2026, 8, 3), 10)
    assert last_call[phone(1)][0].body.startswith(
        "Alice's Bakery: One week left, Pat1! 120 points expire on Aug 10."
    )
    assert "! 20 points expire on Aug 10." in last_call[phone(2)][0].body
    assert [len(t) for t in texts_to(brand, month).values()] == [1, 1]
    assert [len(t) for t in last_call.values()] == [1, 1]


def test_points_expiring_says_nothing_once_the_points_are_all_spent(brand, clock):
    cookie = reward(brand, name="Free cookie", cost=120)
    program_settings(brand, expiry_policy="lot", expiry_days=60)
    week = install(brand, clock, "points_expiring_7", shop_url=SHOP)
    ann = member(brand, 1, clock())
    order(brand, ann, clock(), 120, "o1")
    clock.to_local(date(2026, 7, 20), 12)
    with tenant_scope(brand):
        redemption_create(member=fresh(brand, Member, ann.pk), reward=cookie, now=clock())
    days_at(brand, clock, date(2026, 8, 12), hours=(10,))
    assert texts_to(brand, week) == {}


def test_balance_reminder_after_thirty_days_holding_enough_for_a_reward(brand, clock):
    reward(brand, name="Free cookie", cost=100)
    flow = install(brand, clock, "balance_reminder", shop_url=SHOP)
    ann = member(brand, 1, clock())
    bo = member(brand, 2, clock())
    order(brand, ann, clock(), 150, "o1")
    order(brand, bo, clock(), 50, "o2")  # not enough for anything
    days_at(brand, clock, date(2026, 7, 12), hours=(12,))
    texts = texts_to(brand, flow)
    assert set(texts) == {phone(1)}
    (nudge,) = texts[phone(1)]
    assert nudge.body.startswith(
        "Alice's Bakery: Pat1, your 150 points are enough for a reward. Treat yourself:"
    )
    # Enrolled 10 June at 14:00: 30 days have passed by noon on 11 July.
    assert sent_at_local(nudge) == local(date(2026, 7, 11), 12)


def test_close_to_the_next_tier_tells_how_far_once_per_tier(brand, clock):
    with tenant_scope(brand):
        tier_create(
            tenant=brand, name="Gold", threshold=Decimal(500), basis="points_earned",
            period="lifetime",
        )  # fmt: skip
    flow = install(brand, clock, "near_next_tier", shop_url=SHOP)
    ann = member(brand, 1, clock())
    bo = member(brand, 2, clock())
    clock.to_local(date(2026, 6, 11), 9)
    order(brand, ann, clock(), 420, "o1")  # 80 short
    order(brand, bo, clock(), 300, "o2")  # 200 short
    days_at(brand, clock, date(2026, 6, 14), hours=(11, 12, 13))
    texts = texts_to(brand, flow)
    assert set(texts) == {phone(1)}
    (close,) = texts[phone(1)]
    assert close.body.startswith("Alice's Bakery: So close, Pat1! Just 80 points to Gold.")
    assert sent_at_local(close) == local(date(2026, 6, 11), 12)


def test_winback_survey_contest_coupon_then_sunset_for_those_who_never_respond(brand, clock):
    cookie = reward(brand, name="Free cookie", cost=100)
    flow = install(brand, clock, "winback", shop_url=SHOP, survey_url=SURVEY)
    ann = member(brand, 1, clock())  # taps the survey: active again
    bo = member(brand, 2, clock())  # orders again: out of the win-back
    cy = member(brand, 3, clock())  # never responds: sunset
    for n, who in enumerate((ann, bo, cy)):
        order(brand, who, clock(), 40, f"o{n}")
    tick(brand, clock)

    # Day 30 at 11:00: the survey, to all three.
    days_at(brand, clock, date(2026, 7, 10), hours=(10, 11))
    texts = texts_to(brand, flow)
    assert set(texts) == {phone(1), phone(2), phone(3)}
    for number in texts:
        (survey,) = texts[number]
        assert sent_at_local(survey) == local(date(2026, 7, 10), 11)
        assert "How are we doing? Tell us in 3 quick questions:" in survey.body
    clock.advance(hours=3)
    tap_link(brand, texts[phone(1)][0])
    clock.to_local(date(2026, 7, 20), 16)
    order(brand, bo, clock(), 25, "o-bo-back")
    tick(brand, clock)

    # Day 60: the contest for Cy only (Ann tapped, Bo ordered).
    days_at(brand, clock, date(2026, 8, 9), hours=(11,))
    texts = texts_to(brand, flow)
    assert len(texts[phone(1)]) == 1
    (_, contest) = texts[phone(3)]
    assert contest.body.startswith(
        "Alice's Bakery: Pat3, this month we're giving away a Free cookie. Tap to enter"
    )
    assert sent_at_local(contest) == local(date(2026, 8, 9), 11)
    assert TAG_WINBACK_ACTIVE in fresh(brand, Member, ann.pk).tags

    # Day 90: the coupon, a code of Cy's own.
    days_at(brand, clock, date(2026, 9, 8), hours=(11,))
    (_, _, coupon) = texts_to(brand, flow)[phone(3)]
    with tenant_scope(brand):
        (code,) = Redemption.objects.filter(member=cy, reward=cookie)
    assert code.points_spent == 0
    assert coupon.body.startswith(
        f"Alice's Bakery: Come back for a Free cookie on us, Pat3: code {code.code}. "
    )
    assert "or we'll stop texting in a week." in coupon.body
    assert sent_at_local(coupon) == local(date(2026, 9, 8), 11)

    # Day 97: Cy is unsubscribed (sunset), tagged, and texted no more.
    days_at(brand, clock, date(2026, 9, 20), hours=(11,))
    with tenant_scope(brand):
        cy_number = Subscriber.objects.get(member=cy)
        consent = ConsentRecord.objects.filter(subscriber=cy_number).order_by("id").last()
    assert cy_number.status == SubscriberStatus.UNSUBSCRIBED
    assert cy_number.unsubscribed_at.astimezone(NY).replace(tzinfo=None) == local(
        date(2026, 9, 15), 11
    )
    assert consent.source == "sunset"
    assert TAG_WINBACK_SUNSET in fresh(brand, Member, cy.pk).tags
    assert len(texts_to(brand, flow)[phone(3)]) == 3
    # Ann: only the survey; Bo: the survey, and his first run ended with his order.
    assert len(texts_to(brand, flow)[phone(1)]) == 1
    with tenant_scope(brand):
        assert Subscriber.objects.get(member=ann).status == SubscriberStatus.SUBSCRIBED
        bo_runs = list(FlowRun.objects.filter(flow=flow, member=bo).order_by("id"))
    assert (bo_runs[0].status, bo_runs[0].exit_reason) == (RunStatus.EXITED, "order placed")
    # His new order started a new lapse: 30 days after it the survey again, then the contest.
    bo_texts = texts_to(brand, flow)[phone(2)]
    assert [sent_at_local(t).date() for t in bo_texts] == [
        date(2026, 7, 10),
        date(2026, 8, 19),
        date(2026, 9, 18),
    ]
    assert all(t.status == MessageStatus.SENT for ts in texts_to(brand, flow).values() for t in ts)


def test_no_prebuilt_flow_draws_a_compliance_warning(brand, clock):
    from automations.flows.lint import flow_lint

    everything_set_up(brand)
    settings = messaging_settings_get(brand)
    for prebuilt in CATALOGUE:
        flow = flow_install(
            tenant=brand, key=prebuilt.key, now=clock(), shop_url=SHOP, survey_url=SURVEY
        )
        assert flow_lint(flow, settings) == [], prebuilt.key


def test_tier_perks_is_a_tag_campaigns_can_use_too(brand, clock):
    from messaging.services.bulk import recipient_values

    with tenant_scope(brand):
        silver = tier_create(
            tenant=brand, name="Silver", threshold=Decimal(100), basis="points_earned",
            period="lifetime", perks="Free shipping on every order.",
        )  # fmt: skip
    ann = member(brand, 1, clock())
    order(brand, ann, clock(), 150, "o1")
    bo = member(brand, 2, clock())
    with tenant_scope(brand):
        ann_number = Subscriber.objects.get(member=ann).pk
        bo_number = Subscriber.objects.get(member=bo).pk
    rows = [
        (ann_number, ann.pk, "Pat1", "", 150, silver.name),
        (bo_number, bo.pk, "Pat2", "", 0, None),
    ]
    values = recipient_values(brand, rows, tags={"tier_perks"}, now=clock())
    assert values[ann_number]["tier_perks"] == "Free shipping on every order."
    assert values[bo_number]["tier_perks"] == ""
    assert rendering.unknown_tags("{tier_perks|Thanks!}") == []
