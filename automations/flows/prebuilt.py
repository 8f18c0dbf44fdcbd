"""The prebuilt flows a brand installs in one click: what each does, when, and what it says.

Each entry is a trigger, entry rules, exits and a step graph in automations.flows.spec's
language. The graph is built per brand (`Prebuilt.build(fill)`) because some texts name the
brand's own things: the reward a birthday or a win-back gives, the program's name for its
points, its SMS bonus, the links to the shop and the survey. Tags ({first_name|friend},
{points_balance}, …) are filled per member when the text is made.

House rules for the copy:
- every text starts with "{brand}:" so the number is recognisable, and stays short (one or
  two segments with the opt-out footer the channel adds to every marketing text);
- plain GSM-7 characters only (straight quotes, no dashes or emoji: one such character makes
  the whole text UCS-2 and twice the price);
- it promises only what the program does: points, tiers, the brand's own rewards, codes the
  flow itself issues;
- at most one text per day on any path (the brand's cap would hold the rest back anyway),
  sent in the morning or at lunchtime local time, never at night.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from automations.models import EntryLimit, FlowAudience

# What a prebuilt flow may need from the brand before it can be installed.
NEEDS_REWARD = "reward"  # an active reward (the birthday gift, the win-back coupon, …)
NEEDS_TIER = "tier"  # at least one tier
NEEDS_SMS_BONUS = "sms_bonus"  # the program's bonus for subscribing to texts
NEEDS_EXPIRY = "expiry"  # points that expire
NEEDS_SHOP_URL = "shop_url"  # a link to the shop
NEEDS_SURVEY_URL = "survey_url"  # a link to a short survey

# Tags the win-back and the clickers get, for segments ("tags has winback-active").
TAG_WINBACK_ACTIVE = "winback-active"
TAG_WINBACK_SUNSET = "winback-sunset"


def literal(text: str) -> str:
    """Brand-supplied text inside a template: braces written literally, not read as tags."""
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class Fill:
    """The brand's own values the graphs are built from (all already made safe for a
    template with `literal`, except the ids)."""

    points_name: str = "points"
    shop_url: str = ""
    survey_url: str = ""
    reward_id: int | None = None
    reward_name: str = ""
    sms_bonus: int = 0
    enrollment_bonus: int = 0
    pending_days: int = 0


@dataclass(frozen=True)
class Prebuilt:
    key: str
    name: str
    description: str
    trigger: dict
    entry_limit: str
    audience: str
    build: Callable[[Fill], dict]
    exit_on: tuple[str, ...] = ()
    needs: frozenset[str] = field(default_factory=frozenset)
    # When it runs, in a line (the catalogue's summary).
    timing: str = ""


def _text(body: str, next_step: str | None = None) -> dict:
    return {"type": "send_sms", "body": body, "next": next_step}


def _wait(next_step: str, *, days: int = 0, hours: int = 0, until: str | None = None) -> dict:
    return {"type": "wait", "days": days, "hours": hours, "until": until, "next": next_step}


def _branch(condition: dict, yes: str | None, no: str | None) -> dict:
    return {"type": "branch", "if": condition, "yes": yes, "no": no}


# A member: anyone whose balance is at least 0 (numbers without a member fail every member
# condition, so this tells the two apart).
IS_MEMBER = {"type": "balance_gte", "points": 0}
CLICKED = {"type": "clicked_last"}
ORDERED = {"type": "ordered_since_entry"}


# --- the graphs -----------------------------------------------------------------------------


def _welcome(f: Fill) -> dict:
    return {
        "start": "hello",
        "steps": {
            "hello": _text(
                "{brand}: Welcome, {first_name|friend}! Thanks for joining our texts. "
                f"You'll hear about new arrivals and offers here first. Take a look: {f.shop_url}",
                "wait",
            ),
            "wait": _wait("member", days=2, until="11:00"),
            "member": _branch(IS_MEMBER, "points", "invite"),
            "points": _text(
                "{brand}: {first_name|Hi}, you have {points_balance} {points_name} with us. "
                f"Every order earns more, and they add up to rewards: {f.shop_url}"
            ),
            "invite": _text(
                "{brand}: Did you know our rewards program is free? Join and earn "
                f"{f.points_name} on every order, then spend them on rewards: {f.shop_url}"
            ),
        },
    }


def _join_invite(f: Fill) -> dict:
    starter = (
        f" Join now and get {f.enrollment_bonus:,} {f.points_name} to start."
        if f.enrollment_bonus
        else ""
    )
    return {
        "start": "wait",
        "steps": {
            "wait": _wait("invite", days=7, until="12:00"),
            "invite": _text(
                "{brand}: Shopping with us? Our rewards program is free: earn "
                f"{f.points_name} on every order and spend them on rewards.{starter} "
                f"Join: {f.shop_url}",
                "wait2",
            ),
            "wait2": _wait("clicked", days=7, until="12:00"),
            "clicked": _branch(CLICKED, None, "reminder"),
            "reminder": _text(
                f"{{brand}}: Your orders could be earning {f.points_name}. "
                f"Joining our rewards takes a minute: {f.shop_url}"
            ),
        },
    }


def _sms_bonus(f: Fill) -> dict:
    # The program itself pays its SMS bonus (once ever, in the same transaction as the
    # subscription, ledger key "sms_subscription"): an award step here would pay it twice.
    return {
        "start": "thanks",
        "steps": {
            "thanks": _text(
                "{brand}: Thanks for subscribing, {first_name|friend}! Your SMS bonus of "
                f"{f.sms_bonus:,} {f.points_name} is in: you now have "
                "{points_balance} {points_name}."
            ),
        },
    }


def _vip(f: Fill) -> dict:
    return {
        "start": "congrats",
        "steps": {
            "congrats": _text(
                "{brand}: Congrats {first_name|friend}, you've reached {vip_tier}! "
                "{tier_perks|Thanks for being one of our best customers.}"
            ),
        },
    }


def _birthday(f: Fill) -> dict:
    return {
        "start": "gift",
        "steps": {
            "gift": {"type": "issue_reward", "reward_id": f.reward_id, "next": "wish"},
            "wish": _text(
                "{brand}: Happy birthday, {first_name|friend}! Your gift from us: "
                f"{f.reward_name}. Use code {{reward_code}} on your next order."
            ),
        },
    }


def _expiring_30(f: Fill) -> dict:
    return {
        "start": "heads_up",
        "steps": {
            "heads_up": _text(
                "{brand}: Heads up, {first_name|friend}: {points_expiring} {points_name} "
                "expire on {points_expiring_date}. Spend them on a reward before then: "
                f"{f.shop_url}"
            ),
        },
    }


def _expiring_7(f: Fill) -> dict:
    return {
        "start": "last_call",
        "steps": {
            "last_call": _text(
                "{brand}: One week left, {first_name|friend}! {points_expiring} {points_name} "
                f"expire on {{points_expiring_date}}. Use them while you can: {f.shop_url}"
            ),
        },
    }


def _balance(f: Fill) -> dict:
    return {
        "start": "nudge",
        "steps": {
            "nudge": _text(
                "{brand}: {first_name|Hi}, your {points_balance} {points_name} are enough "
                f"for a reward. Treat yourself: {f.shop_url}"
            ),
        },
    }


def _near_tier(f: Fill) -> dict:
    return {
        "start": "close",
        "steps": {
            "close": _text(
                "{brand}: So close, {first_name|friend}! Just {points_to_next_tier} "
                f"{{points_name}} to {{next_tier}}. Your next order could do it: {f.shop_url}"
            ),
        },
    }


def _winback(f: Fill) -> dict:
    return {
        "start": "survey",
        "steps": {
            # Day 30: ask, don't sell.
            "survey": _text(
                "{brand}: We miss you, {first_name|friend}! How are we doing? "
                f"Tell us in 3 quick questions: {f.survey_url}",
                "wait60",
            ),
            "wait60": _wait("survey_clicked", days=30, until="11:00"),
            "survey_clicked": _branch(CLICKED, "active", "contest"),
            # Day 60: a reason to tap (the brand draws the winner among the tagged).
            "contest": _text(
                "{brand}: {first_name|Hi}, this month we're giving away a "
                f"{f.reward_name}. Tap to enter, no purchase needed: {f.shop_url}",
                "wait90",
            ),
            "wait90": _wait("contest_clicked", days=30, until="11:00"),
            "contest_clicked": _branch(CLICKED, "active", "coupon"),
            # Day 90: a gift, and a fair warning.
            "coupon": {"type": "issue_reward", "reward_id": f.reward_id, "next": "coupon_text"},
            "coupon_text": _text(
                f"{{brand}}: Come back for a {f.reward_name} on us, {{first_name|friend}}: "
                "code {reward_code}. Tap to shop "
                f"{f.shop_url} or we'll stop texting in a week.",
                "wait97",
            ),
            "wait97": _wait("coupon_clicked", days=7, until="11:00"),
            "coupon_clicked": _branch(CLICKED, "active", "ordered"),
            "ordered": _branch(ORDERED, "active", "sunset_tag"),
            # Nothing in 97 days: stop texting them (the list stays clean, no complaints).
            "sunset_tag": {"type": "add_tag", "tag": TAG_WINBACK_SUNSET, "next": "sunset"},
            "sunset": {"type": "unsubscribe", "next": None},
            "active": {"type": "add_tag", "tag": TAG_WINBACK_ACTIVE, "next": None},
        },
    }


def _post_purchase(f: Fill) -> dict:
    pending = (
        f" Points from this order are added after our {f.pending_days}-day return window."
        if f.pending_days
        else ""
    )
    return {
        "start": "wait",
        "steps": {
            "wait": _wait("thanks", hours=1),
            "thanks": _text(
                "{brand}: Thanks for your order, {first_name|friend}! You have "
                "{points_balance} {points_name} to spend on rewards." + pending
            ),
        },
    }


# --- the catalogue --------------------------------------------------------------------------

CATALOGUE: tuple[Prebuilt, ...] = (
    Prebuilt(
        key="welcome_series",
        name="Welcome series",
        timing="On subscribing, then at the first 11:00 two days on",
        description=(
            "Greets every new subscriber at once, while they are paying attention, with a link "
            "to the shop. Two days later, at the next 11:00, it follows up about the rewards "
            "program: members hear their balance and how points add up, numbers that aren't "
            "members are invited to join. Two texts, two days apart, is enough to set "
            "expectations without wearing out a brand-new subscriber. Each number goes "
            "through it once."
        ),
        trigger={"type": "sms_subscribed"},
        entry_limit=EntryLimit.ONCE,
        audience=FlowAudience.ANYONE,
        build=_welcome,
        needs=frozenset({NEEDS_SHOP_URL}),
    ),
    Prebuilt(
        key="loyalty_join_invite",
        name="Loyalty invite for subscribers",
        timing="At the first noon a week after subscribing, a reminder a week later",
        description=(
            "For subscribers who aren't loyalty members: a week after they subscribe, at the "
            "next lunchtime, an invitation to the free rewards program (with the joining bonus, "
            "when the program has one), and one reminder a week later only for those who "
            "didn't tap the first. Waiting a week lets a first order happen on its own; "
            "stopping after two keeps it an invitation, not a campaign. With the welcome "
            "series on too, they hear about the program about 2, 7 and (if they didn't tap) "
            "14 days in, at most."
        ),
        trigger={"type": "sms_subscribed"},
        entry_limit=EntryLimit.ONCE,
        audience=FlowAudience.NON_MEMBERS,
        build=_join_invite,
        needs=frozenset({NEEDS_SHOP_URL}),
    ),
    Prebuilt(
        key="sms_bonus",
        name="SMS bonus for members who subscribe",
        timing="On subscribing",
        description=(
            "Rewards loyalty members for subscribing to texts. Members who aren't subscribed "
            "can't be texted (no consent), so the invitation itself is shown on the storefront "
            "(the loyalty widget) with the program's SMS bonus; when a member does subscribe, "
            "the program pays that bonus once ever and this flow thanks them at once with "
            "their new balance, so the promise is seen to be kept. Once per member. With the "
            "welcome series on too, the brand's cap spaces the two texts (the second waits "
            "its turn, it is not dropped)."
        ),
        trigger={"type": "sms_subscribed"},
        entry_limit=EntryLimit.ONCE,
        audience=FlowAudience.MEMBERS,
        build=_sms_bonus,
        needs=frozenset({NEEDS_SMS_BONUS}),
    ),
    Prebuilt(
        key="vip_upgrade",
        name="VIP upgrade",
        timing="On moving up a tier",
        description=(
            "Congratulates a member the moment they move up a tier, naming the tier and its "
            "perks as the tier describes them (write them in the tier's perks, e.g. \"Free "
            'shipping on every order."; a tier without perks gets a thank-you instead). '
            "Recognition right when it is earned is what makes a tier feel worth reaching. "
            "Every upgrade, to any tier."
        ),
        trigger={"type": "tier_upgraded"},
        entry_limit=EntryLimit.EVERY_TIME,
        audience=FlowAudience.MEMBERS,
        build=_vip,
        needs=frozenset({NEEDS_TIER}),
    ),
    Prebuilt(
        key="birthday_reward",
        name="Birthday reward",
        timing="On the birthday at 10:00",
        description=(
            "On a member's birthday at 10:00 their time, gives them the brand's reward as a "
            "gift (a code of their own, no points spent) and wishes them a happy birthday. "
            "A gift on the day, in the morning, is the most-opened text of the year. "
            "Once a year; members without a birthday on file are never texted."
        ),
        trigger={"type": "birthday", "days_before": 0, "at": "10:00"},
        entry_limit=EntryLimit.YEARLY,
        audience=FlowAudience.MEMBERS,
        build=_birthday,
        needs=frozenset({NEEDS_REWARD}),
    ),
    Prebuilt(
        key="points_expiring_30",
        name="Points expiring in 30 days",
        timing="30 days before points expire, at 10:00",
        description=(
            "Tells a member which points expire and when, 30 days ahead at 10:00, with a link "
            'to spend them. It is one of two flows (with "Points expiring in 7 days") rather '
            "than one flow that waits 23 days: each reads the real expiry date when it runs, "
            "so points that come within range late (earned under a short expiry, or before "
            'the flow was on) still get the right warning, and nobody is told "one week '
            'left" about points already spent or gone. Redeeming a reward ends it.'
        ),
        trigger={"type": "points_expiring", "days": 30, "at": "10:00"},
        entry_limit=EntryLimit.EVERY_TIME,
        audience=FlowAudience.MEMBERS,
        exit_on=("reward_redeemed",),
        build=_expiring_30,
        needs=frozenset({NEEDS_EXPIRY, NEEDS_SHOP_URL}),
    ),
    Prebuilt(
        key="points_expiring_7",
        name="Points expiring in 7 days",
        timing="7 days before points expire, at 10:00",
        description=(
            "The last call: a week before points expire, at 10:00, how many and on which "
            "day. A deadline a week away is close enough to act on and far enough to plan an "
            'order. Pairs with "Points expiring in 30 days". Redeeming a reward ends it.'
        ),
        trigger={"type": "points_expiring", "days": 7, "at": "10:00"},
        entry_limit=EntryLimit.EVERY_TIME,
        audience=FlowAudience.MEMBERS,
        exit_on=("reward_redeemed",),
        build=_expiring_7,
        needs=frozenset({NEEDS_EXPIRY, NEEDS_SHOP_URL}),
    ),
    Prebuilt(
        key="balance_reminder",
        name="Balance reminder",
        timing="After 30 days with a balance that buys a reward, at 12:00",
        description=(
            "When a member has held enough points for a reward for 30 days without using "
            "them, reminds them at lunchtime that a reward is waiting. Points that get spent "
            "bring people back; points forgotten are a program nobody values. About once a "
            "month at most, and not while they are redeeming."
        ),
        trigger={"type": "unredeemed_balance", "days": 30, "at": "12:00"},
        entry_limit=EntryLimit.EVERY_TIME,
        audience=FlowAudience.MEMBERS,
        exit_on=("reward_redeemed",),
        build=_balance,
        needs=frozenset({NEEDS_REWARD, NEEDS_SHOP_URL}),
    ),
    Prebuilt(
        key="near_next_tier",
        name="Close to the next tier",
        timing="When 100 points or fewer short of the next tier, at 12:00",
        description=(
            "When a member is 100 points or fewer from the next tier, tells them how close "
            "they are and which tier it is. A goal that is almost reached is the strongest "
            "reason to order again. Once for each tier they come close to; moving up ends it."
        ),
        trigger={"type": "near_next_tier", "points": 100, "at": "12:00"},
        entry_limit=EntryLimit.EVERY_TIME,
        audience=FlowAudience.MEMBERS,
        exit_on=("tier_upgraded",),
        build=_near_tier,
        needs=frozenset({NEEDS_TIER, NEEDS_SHOP_URL}),
    ),
    Prebuilt(
        key="winback",
        name="Win-back 30/60/90",
        timing="30, 60 and 90 days after the last order at 11:00; sunset on day 97",
        description=(
            "Brings lapsed customers back, or lets them go. 30 days after the last order it "
            "asks how the brand is doing (a survey link); 60 days in, those who didn't tap "
            "get a giveaway to enter (the brand draws the winner among members tagged "
            f"{TAG_WINBACK_ACTIVE}); 90 days in, those who still didn't tap get the brand's "
            "reward as a coupon code and a fair warning. Anyone who taps is active again: "
            f"tagged {TAG_WINBACK_ACTIVE}, and the texts stop. Those who never respond are "
            f"tagged {TAG_WINBACK_SUNSET} and unsubscribed a week after the coupon: texting "
            "people who no longer read them costs money and invites complaints. An order at "
            "any point ends it."
        ),
        trigger={"type": "winback", "days": 30, "at": "11:00"},
        entry_limit=EntryLimit.EVERY_TIME,
        audience=FlowAudience.MEMBERS,
        exit_on=("order_placed",),
        build=_winback,
        needs=frozenset({NEEDS_REWARD, NEEDS_SHOP_URL, NEEDS_SURVEY_URL}),
    ),
    Prebuilt(
        key="post_purchase",
        name="Post-purchase points update",
        timing="1 hour after each order",
        description=(
            "An hour after each order, thanks the member and tells them their points "
            "balance (and, when the program holds points through a return window, when this "
            "order's points arrive). Seeing points grow right after buying is what makes the "
            "program feel real. The hour lets the order settle; the brand's cap keeps "
            "several orders in a day to one text."
        ),
        trigger={"type": "order_placed"},
        entry_limit=EntryLimit.EVERY_TIME,
        audience=FlowAudience.MEMBERS,
        build=_post_purchase,
    ),
)

BY_KEY = {prebuilt.key: prebuilt for prebuilt in CATALOGUE}
