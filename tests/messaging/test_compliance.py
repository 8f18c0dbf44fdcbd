"""compliance.md, When a marketing text may go out: property tests over time zones, DST, state
rules and caps — first the rules as functions, then through the real dispatcher with a fake
clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from loyaltysms.tenancy.context import tenant_scope
from messaging.compliance import (
    Window,
    marketing_send_time,
    next_window_time,
    place_of,
    recipient_zones,
    window_for,
)
from messaging.models import MessageKind, OutboundMessage, Subscriber
from messaging.services.dispatch import dispatch_due
from messaging.services.outbound import message_create
from messaging.services.subscribers import Evidence, subscriber_opt_in

# Numbers whose area codes put them in different zones and states (555-01xx are fictional).
NUMBERS = {
    "+12125550101": ("NY", ("America/New_York",)),
    "+13055550102": ("FL", ("America/New_York",)),
    "+14055550103": ("OK", ("America/Chicago",)),
    "+12065550104": ("WA", ("America/Los_Angeles",)),
    "+13015550105": ("MD", ("America/New_York",)),
    "+18605550106": ("CT", ("America/New_York",)),
    "+14155550107": ("CA", ("America/Los_Angeles",)),
    "+18085550108": ("HI", ("Pacific/Honolulu",)),
    "+16055550109": ("SD", ("America/Denver", "America/North_Dakota/Center")),
    "+19075550110": ("AK", ("America/Adak", "America/Anchorage")),
}
TOLL_FREE = "+18005550111"

US_ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "America/Adak",
    "Pacific/Honolulu",
    "America/Indiana/Indianapolis",
]

# 2026 and 2027, dense around the DST changes (Mar 8 / Nov 1 2026, Mar 14 / Nov 7 2027).
moments = st.one_of(
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    st.sampled_from(
        [datetime(2026, 3, 8), datetime(2026, 11, 1), datetime(2027, 3, 14), datetime(2027, 11, 7)]
    ).flatmap(
        lambda day: st.integers(-36 * 60, 36 * 60).map(
            lambda minutes: (day + timedelta(minutes=minutes)).replace(tzinfo=UTC)
        )
    ),
)
zone_sets = st.lists(st.sampled_from(US_ZONES), min_size=1, max_size=3, unique=True)
regions = st.sampled_from(["", "NY", "FL", "OK", "WA", "MD", "CT", "TX"])


def inside(moment: datetime, zones, window: Window) -> bool:
    return all(
        time(window.start_hour) <= moment.astimezone(ZoneInfo(z)).time() < time(window.end_hour)
        for z in zones
    )


def test_numbers_are_placed_by_their_area_code():
    for number, (state, zones) in NUMBERS.items():
        place = place_of(number)
        assert place.region == state, number
        assert place.zones == zones, number
    # Toll-free: anywhere in the country; only hours legal in all main US zones.
    assert "America/New_York" in place_of(TOLL_FREE).zones
    assert "Pacific/Honolulu" in place_of(TOLL_FREE).zones


def test_state_law_ends_the_day_at_eight_pm():
    for state in ["FL", "OK", "WA", "MD", "CT"]:
        assert window_for(state, 8, 21) == Window(8, 20)
    assert window_for("NY", 8, 21) == Window(8, 21)
    assert window_for("TX", 9, 19) == Window(9, 19)  # a brand may be stricter


def test_a_stored_zone_wins_over_the_number():
    place = place_of("+12125550101")
    assert recipient_zones("America/Los_Angeles", place, "UTC") == ("America/Los_Angeles",)
    assert recipient_zones("", place, "UTC") == ("America/New_York",)
    assert recipient_zones("", place_of("+447700900123"), "Europe/London") == ("Europe/London",)


@given(
    now=moments, zones=zone_sets, region=regions, start=st.integers(8, 12), span=st.integers(3, 13)
)
def test_the_send_time_is_inside_the_window_in_every_zone(now, zones, region, start, span):
    window = window_for(region, start, min(start + span, 21))
    assume(window.start_hour < window.end_hour)
    moment = next_window_time(now, zones, window)
    if moment is None:
        # The zones share no legal hour: then none of the next days has one either.
        for minutes in range(0, 3 * 24 * 60, 15):
            assert not inside(now + timedelta(minutes=minutes), zones, window)
        return
    assert moment >= now
    assert inside(moment, zones, window)
    if moment > now:
        # Deferred: to the very start of the window in one of the zones, and not a minute
        # later than the first legal moment.
        assert any(moment.astimezone(ZoneInfo(z)).time() == time(window.start_hour) for z in zones)
        for minutes in range(0, int((moment - now).total_seconds() // 60), 7):
            assert not inside(now + timedelta(minutes=minutes), zones, window)


@given(
    now=moments,
    zones=zone_sets,
    region=regions,
    cap=st.tuples(st.integers(1, 2), st.integers(0, 24)).map(lambda c: (c[0], c[0] * 12 + c[1])),
    ago=st.lists(st.integers(1, 36 * 60), max_size=6),
)
def test_no_send_breaks_a_cap_or_the_window(now, zones, region, cap, ago):
    cap_messages, cap_hours = cap
    recent = [now - timedelta(minutes=m) for m in ago]
    window = window_for(region, 8, 21)
    moment = marketing_send_time(
        now,
        zones=zones,
        brand_zone="America/New_York",
        window=window,
        recent_sends=recent,
        cap_messages=cap_messages,
        cap_hours=cap_hours,
        region=region,
    )
    assert moment >= now
    legal_zones = zones if next_window_time(now, zones, window) else ["America/New_York"]
    assert inside(moment, legal_zones, window)
    in_cap = [s for s in recent if s > moment - timedelta(hours=cap_hours)]
    assert len(in_cap) < cap_messages
    if region in ("FL", "OK"):
        assert len([s for s in recent if s > moment - timedelta(hours=24)]) < 3


# --- through the dispatcher ----------------------------------------------------------------


@pytest.fixture
def fast_sender(alice_sender):
    alice_sender.mps = 1000  # pacing is tested on its own; here it would only slow things
    alice_sender.save()
    return alice_sender


def subscribe(tenant, number: str, now: datetime) -> Subscriber:
    return subscriber_opt_in(
        tenant=tenant,
        phone=number,
        evidence=Evidence(source="import", extra={"test": True}),
        now=now - timedelta(days=30),
        double_opt_in=False,
        send_confirmation=False,
    )


def queue_texts(
    tenant, subscriber, count: int, prefix: str, now: datetime, kind=MessageKind.MARKETING
):
    for n in range(count):
        message_create(
            tenant=tenant,
            subscriber=subscriber,
            template=f"Offer {n}",
            kind=kind,
            source="test",
            dedupe_key=f"{prefix}:{n}",
            now=now,
        )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(now=moments, number=st.sampled_from([*NUMBERS, TOLL_FREE]))
def test_dispatcher_sends_marketing_only_inside_the_window_and_deferred_at_its_start(
    alice_brand, fast_sender, now, number
):
    tenant = alice_brand.tenant
    with tenant_scope(tenant):
        subscriber = subscribe(tenant, number, now)
        message, _ = message_create(
            tenant=tenant,
            subscriber=subscriber,
            template="Hi {first_name|there}, double points today!",
            kind=MessageKind.MARKETING,
            source="test",
            dedupe_key=f"window:{number}:{now.isoformat()}",
            now=now,
        )
        try:
            clock = now
            report = dispatch_due(now=lambda: clock)
            message.refresh_from_db()
            place = place_of(number)
            zones = place.zones
            window = window_for(place.region, 8, 21)
            if report.deferred:
                assert message.status == "deferred"
                deferred_to = message.send_after
                assert deferred_to > now
                # Nothing goes out a minute early.
                clock = deferred_to - timedelta(minutes=1)
                assert dispatch_due(now=lambda: clock).claimed == 0
                clock = deferred_to
                assert dispatch_due(now=lambda: clock).sent == 1
                message.refresh_from_db()
                assert any(
                    deferred_to.astimezone(ZoneInfo(z)).time() == time(window.start_hour)
                    for z in zones
                )
            assert message.status == "sent"
            assert inside(message.sent_at, zones, window), (number, message.sent_at)
        finally:
            OutboundMessage.objects.all().delete()
            Subscriber.objects.all().delete()


def test_cap_defers_the_second_marketing_text_by_twelve_hours(alice_brand, fast_sender):
    tenant = alice_brand.tenant
    noon = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)  # 12:00 in New York
    with tenant_scope(tenant):
        subscriber = subscribe(tenant, "+12125550101", noon)
        queue_texts(tenant, subscriber, 2, "cap", noon)
        report = dispatch_due(now=lambda: noon)
        assert (report.sent, report.deferred) == (1, 1)
        second = OutboundMessage.objects.get(dedupe_key="cap:1")
        # 12 hours later is midnight in New York: quiet hours push it to 08:00 the next day.
        assert second.send_after == datetime(2026, 6, 11, 12, 0, tzinfo=UTC)
        assert "frequency cap" in second.status_reason


def test_florida_numbers_get_texts_only_until_eight_pm_and_under_both_caps(
    alice_brand, fast_sender
):
    tenant = alice_brand.tenant
    start = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)  # 08:00 in Miami
    with tenant_scope(tenant):
        subscriber = subscribe(tenant, "+13055550102", start)
        queue_texts(tenant, subscriber, 4, "fl", start)
        clock = start
        for _ in range(30):
            dispatch_due(now=lambda clock=clock: clock)
            clock += timedelta(hours=1)
        sent = sorted(
            OutboundMessage.objects.filter(status="sent").values_list("sent_at", flat=True)
        )
        # 08:00, then 12 hours later is 20:00 — past Florida's day — so 08:00 the next day.
        assert sent == [start, start + timedelta(days=1)]
        for moment in sent:
            assert len([s for s in sent if moment - timedelta(hours=24) < s <= moment]) <= 3
            assert inside(moment, ["America/New_York"], Window(8, 20))


def test_transactional_texts_ignore_quiet_hours_and_caps(alice_brand, fast_sender):
    tenant = alice_brand.tenant
    midnight = datetime(2026, 6, 11, 4, 0, tzinfo=UTC)  # 00:00 in New York
    with tenant_scope(tenant):
        subscriber = subscribe(tenant, "+12125550101", midnight)
        queue_texts(tenant, subscriber, 3, "tx", midnight, kind=MessageKind.TRANSACTIONAL)
        assert dispatch_due(now=lambda: midnight).sent == 3


def test_a_message_that_expires_before_its_window_expires_instead(alice_brand, fast_sender):
    tenant = alice_brand.tenant
    night = datetime(2026, 6, 11, 3, 0, tzinfo=UTC)  # 23:00 in New York
    with tenant_scope(tenant):
        subscriber = subscribe(tenant, "+12125550101", night)
        message, _ = message_create(
            tenant=tenant,
            subscriber=subscriber,
            template="Flash sale ends at midnight!",
            kind=MessageKind.MARKETING,
            source="test",
            dedupe_key="expiring",
            now=night,
            expires_at=night + timedelta(hours=1),
        )
        assert dispatch_due(now=lambda: night).expired == 1
        message.refresh_from_db()
        assert message.status == "expired"


def test_a_cap_counts_real_hours_across_a_dst_change():
    # The day clocks go back (2026-11-01 in New York) is 25 hours long: "24 hours after the
    # last send" must be counted in real time, not on the wall clock.
    now = datetime(2026, 10, 31, 14, 40, tzinfo=UTC)
    last = now - timedelta(minutes=119)  # 2026-10-31 12:41 UTC
    moment = marketing_send_time(
        now,
        zones=["America/New_York"],
        brand_zone="America/New_York",
        window=Window(8, 21),
        recent_sends=[last],
        cap_messages=1,
        cap_hours=24,
        region="",
    )
    assert moment >= last + timedelta(hours=24)
    assert moment == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)  # 08:00 EST, the window's start


def test_a_marketing_text_in_the_windows_last_minute_waits_for_the_next_window(
    alice_brand, fast_sender
):
    tenant = alice_brand.tenant
    late = datetime(2026, 6, 11, 0, 59, 30, tzinfo=UTC)  # 20:59:30 in New York
    with tenant_scope(tenant):
        subscriber = subscribe(tenant, "+12125550101", late)
        queue_texts(tenant, subscriber, 1, "late", late)
        assert dispatch_due(now=lambda: late).deferred == 1
        message = OutboundMessage.objects.get()
        # Its batch could leave after 21:00: 08:00 the next day instead.
        assert message.send_after == datetime(2026, 6, 11, 12, 0, tzinfo=UTC)
        assert message.status_reason.startswith("quiet hours")
        earlier = late - timedelta(minutes=2)  # 20:57:30: a minute and a half to spare
        OutboundMessage.objects.update(status="queued", send_after=earlier, status_reason="")
        assert dispatch_due(now=lambda: earlier).sent == 1
