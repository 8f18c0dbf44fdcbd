"""What the home page shows: the setup checklist, this month's numbers, and what needs attention.

Each part is a fixed number of queries whatever the brand's size: the checklist is one query of
EXISTS tests, the month is the analytics page's grouped queries over this month, attention is
two grouped counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Count, Exists, Q
from django.urls import reverse

from automations import stats
from automations.models import Flow, FlowStatus
from loyaltysms.models import ApiKey, AuditEvent, Tenant
from messaging.models import MessageStatus, OutboundMessage, Subscriber, SubscriberStatus
from programs.models import Member, Reward, Tier


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    hint: str
    url: str
    done: bool


@dataclass(frozen=True)
class Checklist:
    steps: list[Step]

    @property
    def done(self) -> int:
        return sum(step.done for step in self.steps)

    @property
    def complete(self) -> bool:
        return self.done == len(self.steps)

    @property
    def next_step(self) -> Step | None:
        return next((step for step in self.steps if not step.done), None)


# (key, title, what to do, where) in the order a new brand does them.
STEPS = [
    (
        "program",
        "Set up the program basics",
        "Name the program and its points, the earn rate and the bonuses, then save.",
        "program_settings",
    ),
    (
        "tiers_rewards",
        "Add tiers and rewards",
        "Start from the templates in one click and change them later, or make your own.",
        "program_tiers",
    ),
    (
        "sender",
        "Choose how to text",
        "Keep the sandbox, which texts the phone simulator only, or connect Twilio to text "
        "real phones.",
        "sms_settings",
    ),
    (
        "compliance",
        "Review the compliance texts",
        "The opt-in, HELP and disclosure wording comes prefilled and compliant: read it, "
        "adjust it, save.",
        "sms_settings",
    ),
    (
        "flow",
        "Turn on your first flow",
        "Install a prebuilt flow such as the welcome series and switch it on.",
        "flows",
    ),
    (
        "api_key",
        "Connect your store",
        "Create an API key for your storefront to send members and orders.",
        "settings_api_keys",
    ),
    (
        "first_text",
        "Send your first automated text",
        "Text your join keyword from the phone simulator: your flow answers.",
        "sms_simulator",
    ),
]


def setup_checklist(tenant: Tenant) -> Checklist:
    """The setup steps, each ticked by what the brand has done (one query)."""
    marks = (
        Tenant.objects.filter(pk=tenant.pk)
        .annotate(
            program=Exists(AuditEvent.objects.filter(action="program.updated")),
            tiers_rewards=Exists(Tier.objects.all()) & Exists(Reward.objects.filter(active=True)),
            # Every brand starts on the sandbox; the step is choosing it, or Twilio.
            sender=Exists(
                AuditEvent.objects.filter(
                    action__in=["sender.use_sandbox", "sender.connect_twilio"]
                )
            ),
            compliance=Exists(
                AuditEvent.objects.filter(
                    action__in=["messaging.settings", "messaging.settings_reviewed"]
                )
            ),
            flow=Exists(Flow.objects.filter(status=FlowStatus.LIVE)),
            api_key=Exists(ApiKey.objects.filter(revoked_at__isnull=True)),
            first_text=Exists(
                OutboundMessage.objects.filter(
                    source="flow", status__in=[MessageStatus.SENT, MessageStatus.DELIVERED]
                )
            ),
        )
        .values(*(key for key, *_ in STEPS))
        .get()
    )
    return Checklist(
        [
            Step(key=key, title=title, hint=hint, url=reverse(url_name), done=marks[key])
            for key, title, hint, url_name in STEPS
        ]
    )


@dataclass(frozen=True)
class Attention:
    text: str
    url: str
    level: str = "warning"  # or "info"


# A sender "near its throughput": its due texts would take longer than this at its rate.
BACKLOG_WARNING = timedelta(minutes=15)

SENDER_BACKLOG = """
SELECT s.id, coalesce(s.phone_number, s.messaging_service_sid), s.mps, count(o.id)
FROM messaging_sender s
JOIN messaging_outboundmessage o
  ON o.tenant_id = s.tenant_id AND o.sender_id = s.id
 AND o.status = ANY(%(due)s) AND o.send_after <= %(now)s
WHERE s.tenant_id = %(tenant)s
GROUP BY s.id
HAVING count(o.id) > s.mps * %(seconds)s
"""


def attention(tenant: Tenant, *, failed: int, now: datetime) -> list[Attention]:
    """What a marketer should look at besides unread replies (the page has the nav's count):
    failed texts this month, a sender whose queue would take more than 15 minutes at its rate,
    flows still in draft."""
    items = []
    if failed:
        items.append(
            Attention(
                f"{failed:,} marketing text{'s' if failed != 1 else ''} failed this month "
                "(wrong or landline numbers, carrier refusals)",
                reverse("analytics"),
            )
        )
    with connection.cursor() as cursor:
        cursor.execute(
            SENDER_BACKLOG,
            {
                "tenant": tenant.pk,
                "now": now,
                "due": [MessageStatus.QUEUED, MessageStatus.DEFERRED],
                "seconds": int(BACKLOG_WARNING.total_seconds()),
            },
        )
        for _sender_id, number, mps, due in cursor.fetchall():
            minutes = due / max(mps, 1) / 60
            items.append(
                Attention(
                    f"Sender {number} has {due:,} texts waiting: about {minutes:,.0f} minutes "
                    f"at {mps} a second",
                    reverse("sms_settings"),
                )
            )
    drafts = Flow.objects.filter(status=FlowStatus.DRAFT).count()
    if drafts:
        them = "them" if drafts != 1 else "it"
        items.append(
            Attention(
                f"{drafts} flow{'s' if drafts != 1 else ''} in draft: nobody enters {them} "
                f"until you switch {them} on",
                reverse("flows"),
                level="info",
            )
        )
    return items


@dataclass(frozen=True)
class Month:
    start: datetime  # the first of the month, midnight in the brand's zone
    end: datetime  # tomorrow's midnight: the month so far, today included
    members: int
    new_members: int
    subscribers: int
    subscribed: int  # this month
    opt_outs: int  # this month
    figures: stats.Stats  # marketing texts created this month and their results
    daily: dict[str, list]  # one list per stats.DAILY_COLUMNS column, every day so far

    @property
    def net_growth(self) -> int:
        return self.subscribed - self.opt_outs

    def cards(self, currency: str) -> list[dict]:
        """The home page's figures: a value, its label and what it is out of."""
        figures = self.figures
        return [
            {
                "label": "Subscribers",
                "value": f"{self.subscribers:,}",
                "sub": f"{self.net_growth:+,} net this month ({self.subscribed:,} joined, "
                f"{self.opt_outs:,} left)",
            },
            {
                "label": "Members",
                "value": f"{self.members:,}",
                "sub": f"{self.new_members:+,} joined this month",
            },
            {
                "label": "Marketing texts",
                "value": f"{figures.sent:,}",
                "sub": f"sent this month · {figures.cost:,.2f} {currency} estimated cost",
            },
            {
                "label": "Delivery rate",
                "value": _percent(figures.delivery_rate),
                "sub": f"{figures.delivered:,} delivered · {figures.failed:,} failed",
            },
            {
                "label": "Click-through rate",
                "value": _percent(figures.ctr),
                "sub": f"{figures.unique_clicks:,} unique clicks",
            },
            {
                "label": "Attributed revenue",
                "value": f"{figures.revenue:,.2f} {currency}",
                "sub": f"{figures.attributed_orders:,} orders after a text",
            },
            {
                "label": "Opt-out rate",
                "value": _percent(figures.opt_out_rate),
                "sub": f"{figures.opt_outs:,} STOPs after a marketing text",
            },
        ]


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def month_numbers(tenant: Tenant, now: datetime) -> Month:
    """This month so far in the brand's zone: list size and growth, members, and what the
    marketing texts did (the analytics page's figures and daily series for the month)."""
    zone = ZoneInfo(tenant.timezone)
    local = now.astimezone(zone)
    first = local.date().replace(day=1)
    start = datetime.combine(first, time.min, tzinfo=zone)
    end = datetime.combine(local.date() + timedelta(days=1), time.min, tzinfo=zone)
    members = Member.objects.aggregate(
        total=Count("id"), new=Count("id", filter=Q(enrolled_at__gte=start))
    )
    subscribers = Subscriber.objects.filter(status=SubscriberStatus.SUBSCRIBED).count()
    by_day = {row[0]: row for row in stats.tenant_daily(tenant, start, end)}
    daily: dict[str, list] = {name: [] for name in stats.DAILY_COLUMNS}
    for offset in range((local.date() - first).days + 1):
        day = first + timedelta(days=offset)
        row = by_day.get(day)
        daily["day"].append(day.isoformat())
        for index, name in enumerate(stats.DAILY_COLUMNS[1:], start=1):
            value = row[index] if row else 0
            daily[name].append(float(value) if name == "revenue" else value)
    return Month(
        start=start,
        end=end,
        members=members["total"],
        new_members=members["new"],
        subscribers=subscribers,
        subscribed=sum(daily["subscribed"]),
        opt_outs=sum(daily["opt_outs"]),
        figures=stats.tenant_stats(tenant, start, end),
        daily=daily,
    )
