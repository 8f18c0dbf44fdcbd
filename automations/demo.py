"""The demo brand's campaigns: two sent ones with their results, and one scheduled.

The sent ones are lived through by the real services on a clock set to each moment, in the
order things happened: composed and scheduled, launched (the A/B test decided after its
wait), sent by the dispatcher through the sandbox carrier, settled by delivery receipts,
answered through the inbound-text handling (replies, STOP), bought from through the order
service, and attributed. Only the clicks are written directly (`_clicks_record` says why).
Every text they made is settled before this returns: the dispatcher `make run` starts finds
nothing of them to send.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import connection

from automations.metrics import dedupe_prefix
from automations.models import Campaign, CampaignStatus, RecipientGroup
from automations.services.campaigns import VariantSpec, campaign_create, campaign_schedule
from automations.services.flow_install import flow_install
from automations.services.launch import campaign_advance
from loyaltysms.demo import DEMO_EMAIL
from loyaltysms.models import Tenant, User
from loyaltysms.tenancy.context import tenant_scope
from messaging.attribution import LOOKBACK, attribute_orders, windows
from messaging.models import DUE_STATUSES, MessageStatus, OutboundMessage, Sender, Subscriber
from messaging.services.dispatch import dispatch_due
from messaging.services.inbound import inbound_receive
from messaging.services.setup import sender_default
from messaging.services.status import status_receive
from programs.models import Member
from programs.services.orders import order_record
from segments.models import Segment
from segments.services import segment_create

SITE = "https://demo-coffee.example"
# The demo segments (segments/demo.py) each campaign goes to.
WAITING_BEANS = "Members with a balance who never redeemed"
LAPSED = "No order in 90 days"
BIRTHDAYS = "Birthdays in the next 14 days"
# Left out of every campaign: as a marketer would, and it keeps numbers that subscribed after
# a past campaign's moment out of its audience (the rule counts days back from that moment).
NEW_SUBSCRIBERS = (
    "Joined SMS in the last 7 days",
    {"all": [{"field": "subscribed_days", "op": "lt", "value": 7}]},
)
SEND_HOUR = 12  # in the brand's zone: 09:00 on the west coast, inside every US window
AB_WAIT_MINUTES = 240

DELIVERED_SHARE = 0.97
UNDELIVERED_CODES = ("30003", "30005", "30006")
REPLY_SHARE = 0.02
STOP_SHARE = 0.008
DELIVERY_BUY_SHARE = 0.01  # of the other members texted: bought within a day, no click
REPLIES = [
    "Can I use my beans in the store too?",
    "Thanks, just ordered!",
    "Is the Main St shop open on Sunday?",
    "Do you still have the Guatemala roast?",
    "Love this, see you Saturday",
    "How many beans do I need for a free bag?",
]

# The sandbox sender's real pace is 10 texts a second (messaging.services.setup): the replay
# raises it for its own sends, so hundreds of past texts don't take a minute of `make run`.
REPLAY_MPS = 2000
EARLIEST = datetime.min.replace(tzinfo=UTC)


def seed(tenant: Tenant, *, now: datetime) -> dict:
    rng = random.Random(2024)  # noqa: S311 - demo data, the same on every machine
    with tenant_scope(tenant):
        actor = User.objects.filter(email=DEMO_EMAIL).first()
        segments = {s.name: s for s in Segment.objects.all()}
        new_subscribers = segment_create(
            tenant=tenant, name=NEW_SUBSCRIBERS[0], rules=NEW_SUBSCRIBERS[1], now=now
        )
        replay = _Replay(tenant, rng, now)
        with _unpaced(tenant):
            beans = _beans_waiting(replay, segments[WAITING_BEANS], new_subscribers, actor)
            lapsed = _win_back(replay, segments[LAPSED], new_subscribers, actor)
        _birthday(tenant, now, segments[BIRTHDAYS], new_subscribers, actor)
        _assert_settled([beans, lapsed], replay.latest)
        flows = _flows(tenant, now, actor)
    return {
        "campaigns": 3,
        "segments": 1,
        "flows": flows,
        **replay.counts,
    }


# Prebuilt flows installed as drafts (nothing is sent until someone switches one on): the
# flows page shows what they do, and a dry run shows what they would have done.
DEMO_FLOWS = ("welcome_series", "birthday_reward", "winback")


def _flows(tenant: Tenant, now: datetime, actor) -> int:
    for key in DEMO_FLOWS:
        flow_install(
            tenant=tenant,
            key=key,
            now=now,
            actor=actor,
            shop_url="https://demo-coffee.example/shop",
            survey_url="https://demo-coffee.example/survey",
        )
    return len(DEMO_FLOWS)


def _local(tenant: Tenant, now: datetime, days: int, hour: int) -> datetime:
    """`hour` o'clock in the brand's zone, `days` days from `now`'s local date."""
    zone = ZoneInfo(tenant.timezone)
    day = now.astimezone(zone).date() + timedelta(days=days)
    return datetime.combine(day, time(hour), tzinfo=zone)


# --- the campaigns ------------------------------------------------------------------------


def _beans_waiting(replay: _Replay, segment, excluded, actor) -> Campaign:
    """Twelve days ago: everyone with beans to spend, nudged to the rewards page."""
    at = _local(replay.tenant, replay.now, -12, SEND_HOUR)
    campaign = campaign_create(
        tenant=replay.tenant,
        now=at - timedelta(days=2, hours=3),
        actor=actor,
        name="Your beans are waiting",
        body=(
            "{first_name|Hi there}, you have {points_balance} beans to spend at Demo Coffee! "
            f"A free bag starts at 900. Pick your reward: {SITE}/rewards"
        ),
        segment_ids=[segment.pk],
        exclude_segment_ids=[excluded.pk],
        send_mode="at",
        send_at=at,
    )
    campaign_schedule(campaign=campaign, now=at - timedelta(days=1, hours=5), actor=actor)
    campaign_advance(campaign=campaign, now=at)
    texts = replay.send(campaign, at)
    replay.respond(campaign, texts, click_rate=0.14, click_minutes=45)
    replay.buy(campaign, buy_share=0.25)
    return campaign


def _win_back(replay: _Replay, segment, excluded, actor) -> Campaign:
    """Five days ago: an A/B test of two offers to lapsed customers, 10 % held out; the
    variant with more clicks after four hours went to the rest."""
    tenant = replay.tenant
    at = _local(tenant, replay.now, -5, SEND_HOUR - 1)
    campaign = campaign_create(
        tenant=tenant,
        now=at - timedelta(days=1, hours=2),
        actor=actor,
        name="We miss you: 15% off or free shipping?",
        variants=[
            VariantSpec(
                "15% off",
                "We miss you, {first_name|friend}! Take 15% off your next bag this week: "
                f"{SITE}/welcome-back",
            ),
            VariantSpec(
                "Free shipping",
                "{first_name|Hi}, it's been a while! Your next bag ships free this week, "
                f"roasted the day it leaves: {SITE}/free-shipping",
            ),
        ],
        segment_ids=[segment.pk],
        exclude_segment_ids=[excluded.pk],
        send_mode="at",
        send_at=at,
        holdout_percent=10,
        test_percent=40,
        winner_metric="clicks",
        wait_minutes=AB_WAIT_MINUTES,
    )
    campaign_schedule(campaign=campaign, now=at - timedelta(hours=20), actor=actor)
    campaign_advance(campaign=campaign, now=at)
    test = replay.send(campaign, at)
    # The free-shipping offer pulls about twice the clicks; those of the test group come
    # before the decision, as a four-hour wait is meant to catch.
    variants = dict(campaign.variants.values_list("id", "label"))
    rates = {label: (0.09 if label == "15% off" else 0.2) for label in variants.values()}
    by_variant: dict[str, list] = {}
    for sent in test:
        by_variant.setdefault(variants[replay.variant_of[sent.text.subscriber_id]], []).append(sent)
    for label, texts in sorted(by_variant.items()):
        replay.respond(
            campaign,
            texts,
            click_rate=rates[label],
            click_minutes=40,
            latest=timedelta(minutes=AB_WAIT_MINUTES - 20),
        )
    decided = at + timedelta(minutes=AB_WAIT_MINUTES)
    campaign_advance(campaign=campaign, now=decided)
    remainder = replay.send(campaign, decided)
    replay.respond(campaign, remainder, click_rate=0.16, click_minutes=50)
    # An offer converts its clickers better than a reminder does.
    replay.buy(campaign, buy_share=0.4, holdout_buyers=1)
    return campaign


def _birthday(tenant: Tenant, now: datetime, segment, excluded, actor) -> Campaign:
    """Three days ahead at 10:00 in the brand's zone, for the beat scan to launch."""
    campaign = campaign_create(
        tenant=tenant,
        now=now - timedelta(hours=2),
        actor=actor,
        name="Birthday latte on us",
        body=(
            "Happy birthday month, {first_name|friend}! Your next latte is on us: show this "
            f"text in store or use it online: {SITE}/birthday"
        ),
        segment_ids=[segment.pk],
        exclude_segment_ids=[excluded.pk],
        send_mode="at",
        send_at=_local(tenant, now, 3, 10),
        expires_hours=8,
    )
    return campaign_schedule(campaign=campaign, now=now - timedelta(hours=1), actor=actor)


# --- living through a campaign ------------------------------------------------------------


@dataclass
class _Sent:
    text: OutboundMessage
    delivered_at: datetime | None


@dataclass
class _Replay:
    """One clock-driven replay of the brand's campaigns, and what its people did."""

    tenant: Tenant
    rng: random.Random
    now: datetime
    counts: dict = field(
        default_factory=lambda: dict.fromkeys(
            ("texts", "delivered", "clicks", "replies", "opt_outs", "orders"), 0
        )
    )
    variant_of: dict[int, int] = field(default_factory=dict)
    # Per campaign: (subscriber id, first click) of its clickers, and its other delivered texts.
    clicked: dict[int, list[tuple[int, datetime]]] = field(default_factory=dict)
    delivered: dict[int, list[_Sent]] = field(default_factory=dict)
    latest: datetime = EARLIEST  # the last moment replayed

    def send(self, campaign: Campaign, at: datetime) -> list[_Sent]:
        """The campaign's texts due at `at`, through the dispatcher and the sandbox carrier,
        and their delivery receipts."""
        campaign.refresh_from_db()
        self.variant_of.update(
            campaign.recipients.filter(group=RecipientGroup.TEST).values_list(
                "subscriber_id", "variant_id"
            )
        )
        sent = _dispatch(self.tenant, at)
        self.latest = max(self.latest, at)
        prefix = dedupe_prefix(campaign)
        ours = [t for t in sent if t.dedupe_key.startswith(prefix)]
        results = self.receipts(ours)
        self.counts["texts"] += len(ours)
        self.counts["delivered"] += sum(1 for r in results if r.delivered_at is not None)
        return results

    def receipts(self, texts: list[OutboundMessage]) -> list[_Sent]:
        """Receipts a few seconds after each send: most delivered, a few undelivered."""
        failing = round(len(texts) * (1 - DELIVERED_SHARE))
        undelivered = set(self.rng.sample(range(len(texts)), failing))
        results = []
        for n, text in enumerate(texts):
            at = text.sent_at + timedelta(seconds=self.rng.uniform(2, 45))
            params = {"MessageSid": text.carrier_sid, "MessageStatus": "delivered"}
            if n in undelivered:
                params |= {
                    "MessageStatus": "undelivered",
                    "ErrorCode": self.rng.choice(UNDELIVERED_CODES),
                }
            status_receive(message=text, params=params, now=at)
            results.append(_Sent(text, None if n in undelivered else at))
        return results

    def respond(
        self,
        campaign: Campaign,
        texts: list[_Sent],
        *,
        click_rate: float,
        click_minutes: float,
        latest: timedelta = timedelta(days=2),
    ) -> None:
        """Some recipients of delivered texts click, a few reply, one or two text STOP."""
        rng = self.rng
        delivered = [s for s in texts if s.delivered_at is not None]
        people = rng.sample(delivered, len(delivered))  # each does one thing at most
        clicks = round(len(people) * click_rate)
        replies = max(1, round(len(people) * REPLY_SHARE))
        stops = max(1, round(len(people) * STOP_SHARE))

        def after(sent: _Sent, mean_minutes: float) -> datetime:
            minutes = min(rng.expovariate(1 / mean_minutes), latest.total_seconds() / 60)
            return sent.delivered_at + timedelta(minutes=minutes, seconds=rng.randint(0, 59))

        clicking = [(s.text, after(s, click_minutes)) for s in people[:clicks]]
        _clicks_record(self.tenant, {text.dedupe_key: at for text, at in clicking}, rng)
        self.counts["clicks"] += len(clicking)
        self.clicked.setdefault(campaign.pk, []).extend(
            (text.subscriber_id, at) for text, at in clicking
        )
        replying = people[clicks : clicks + replies]
        stopping = people[clicks + replies : clicks + replies + stops]
        self.delivered.setdefault(campaign.pk, []).extend(people[clicks + replies + stops :])
        answers = [(after(s, 25), s, rng.choice(REPLIES)) for s in replying] + [
            (after(s, 10), s, rng.choice(["STOP", "Stop"])) for s in stopping
        ]
        for at, sent, body in sorted(answers, key=lambda answer: answer[0]):
            self._inbound(sent.text.subscriber, body, at)
            self.latest = max(self.latest, at)
        self.counts["replies"] += replies
        self.counts["opt_outs"] += stops

    def _inbound(self, subscriber: Subscriber, body: str, at: datetime) -> None:
        sender = sender_default(self.tenant)
        inbound_receive(
            sender=sender,
            params={
                "MessageSid": f"SM{self.rng.getrandbits(128):032x}",
                "From": subscriber.e164,
                "To": sender.phone_number,
                "Body": body,
                "NumMedia": "0",
            },
            now=at,
        )
        # An opt-out's confirmation goes at once, as the dispatcher would have sent it.
        self.receipts(_dispatch(self.tenant, at))

    def buy(self, campaign: Campaign, *, buy_share: float, holdout_buyers: int = 0) -> None:
        """Orders: `buy_share` of the clicking members, within the hour or the next days; a few
        members texted who didn't click, within a day; `holdout_buyers` held-out members on
        their own (a small basket). Then the attribution scan, as beat runs it."""
        rng = self.rng
        click_window, delivery_window = windows(self.tenant)
        members = dict(
            Subscriber.objects.filter(member__isnull=False).values_list("id", "member_id")
        )

        def basket() -> Decimal:
            return Decimal(rng.randint(1800, 6400)) / 100

        orders = []  # (when, member id, subtotal)
        for subscriber_id, clicked_at in self.clicked.get(campaign.pk, []):
            if subscriber_id in members and rng.random() < buy_share:
                minutes = rng.choice([rng.uniform(3, 60), rng.uniform(120, 3 * 24 * 60)])
                at = clicked_at + timedelta(minutes=minutes)
                orders.append((at, members[subscriber_id], basket()))
        others = [s for s in self.delivered.get(campaign.pk, []) if s.text.subscriber_id in members]
        count = min(len(others), max(1, round(len(others) * DELIVERY_BUY_SHARE)))
        for sent in rng.sample(others, count):
            hours = rng.uniform(1, delivery_window.total_seconds() / 3600 - 1)
            at = sent.delivered_at + timedelta(hours=hours)
            orders.append((at, members[sent.text.subscriber_id], basket()))
        held = sorted(
            campaign.recipients.filter(
                group=RecipientGroup.HOLDOUT, subscriber__member__isnull=False
            ).values_list("subscriber_id", flat=True)
        )
        for subscriber_id in rng.sample(held, min(holdout_buyers, len(held))):
            at = campaign.frozen_at + timedelta(days=rng.uniform(0.5, 2))
            orders.append((at, members[subscriber_id], Decimal(rng.randint(1800, 2400)) / 100))
        buyers = Member.objects.in_bulk({member_id for _, member_id, _ in orders})
        placed = 0
        for at, member_id, subtotal in sorted(orders, key=lambda order: order[0]):
            member = buyers[member_id]
            if at >= self.now or member.enrolled_at >= at:
                continue
            placed += 1
            order_record(
                tenant=self.tenant,
                order_id=f"SMS-{campaign.pk}-{placed:03d}",
                member_external_id=member.external_id,
                subtotal=subtotal,
                currency=self.tenant.currency,
                now=at,
            )
        self.counts["orders"] += placed
        scanned_at = min(campaign.frozen_at + click_window + timedelta(hours=1), self.now)
        attribute_orders(tenant=self.tenant, since=campaign.frozen_at - LOOKBACK, now=scanned_at)


def _dispatch(tenant: Tenant, at: datetime) -> list[OutboundMessage]:
    """Run the dispatcher on the brand's own sender with its clock at `at`; the brand's texts
    it handed to the carrier."""
    dispatch_due(now=lambda: at, sender_ids={sender_default(tenant).pk})
    return list(
        OutboundMessage.objects.filter(status=MessageStatus.SENT, sent_at=at)
        .select_related("tenant", "subscriber")
        .order_by("id")
    )


# Clicks on tracked links, the first at each given moment.
CLICKS = """
UPDATE messaging_shortlink l
SET first_clicked_at = v.clicked_at, clicks = v.clicks
FROM unnest(%s::varchar[], %s::timestamptz[], %s::int[]) AS v(dedupe_key, clicked_at, clicks)
WHERE l.tenant_id = %s AND l.message_dedupe_key = v.dedupe_key AND l.first_clicked_at IS NULL
"""


def _clicks_record(tenant: Tenant, clicks: dict[str, datetime], rng: random.Random) -> None:
    """A click is recorded by the short-link view (messaging/links.py) on the wall clock, and
    no service takes another moment: the past clicks are written here the way it writes them
    (first_clicked_at once, clicks counted), in one statement."""
    keys = sorted(clicks)
    with connection.cursor() as cursor:
        cursor.execute(
            CLICKS,
            [
                keys,
                [clicks[key] for key in keys],
                [rng.choice([1, 1, 1, 2]) for _ in keys],
                tenant.pk,
            ],
        )


@contextmanager
def _unpaced(tenant: Tenant) -> Iterator[None]:
    """The sandbox sender at REPLAY_MPS while the past is replayed, then at its own pace.
    No service sets a sandbox sender's pace (only a Twilio sender's, when connected), and the
    change never leaves seed_demo's transaction."""
    sender = sender_default(tenant)
    pace = Sender.objects.filter(pk=sender.pk)
    own = pace.values_list("mps", flat=True).get()
    pace.update(mps=REPLAY_MPS)
    yield  # (an error rolls the whole seed back, this change with it)
    pace.update(mps=own)


def _assert_settled(campaigns: list[Campaign], latest: datetime) -> None:
    """Nothing of the past may be left for the real dispatcher to send now."""
    unsettled = [*DUE_STATUSES, MessageStatus.SENDING]
    for campaign in campaigns:
        campaign.refresh_from_db()
        waiting = OutboundMessage.objects.filter(
            dedupe_key__startswith=dedupe_prefix(campaign), status__in=unsettled
        ).count()
        if campaign.status != CampaignStatus.SENT or waiting:
            raise RuntimeError(
                f"demo campaign {campaign.name!r} is {campaign.status} with {waiting} texts "
                "not yet sent"
            )
    late = OutboundMessage.objects.filter(status__in=unsettled, send_after__lte=latest).count()
    if late:
        raise RuntimeError(f"{late} texts of the demo's past are still waiting to be sent")
