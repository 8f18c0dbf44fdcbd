"""What a flow may say: its trigger, its steps and its exits, checked before it is saved.

Triggers
- events from the programs outbox: member_enrolled, sms_subscribed ("sources": only numbers
  that subscribed through these, e.g. not imports), tier_upgraded,
  tier_downgraded (optionally to one tier: "tier_id"), points_earned, reward_redeemed,
  order_placed, order_refunded;
- dates, found by a scan at a local time of day ("at", "HH:MM") in each member's zone:
  birthday ("days_before", 0 = on the day), points_expiring ("days": within N days),
  winback ("days" since the last order), near_next_tier ("points" short of it),
  unredeemed_balance (a balance that buys a reward, unredeemed for "days"), anniversary (of
  enrolling).

Steps: {"start": id, "steps": {id: step}}, each step one of
- send_sms {"body", "next"} — a marketing text (tags and links as in campaigns);
- wait {"days", "hours", "minutes", "until": "HH:MM" or null, "next"} — the duration, then
  (with "until") on to that local time of day;
- branch {"if": condition, "yes", "no"} with condition {"type": clicked_last | ordered_since_entry
  | subscribed | tier_is ("tier_id") | balance_gte ("points")};
- award_points {"points", "next"}; issue_reward {"reward_id", "next"};
- add_tag / remove_tag {"tag", "next"}; unsubscribe {"next"} (sunset); end {}.
"next" may be null (the run ends there). The graph has no cycles and every step is reachable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loyaltysms.problems import ProblemError
from messaging.models import ConsentSource
from messaging.services.outbound import BodyInvalid, check_template

EVENT_TRIGGERS = {
    "member_enrolled": "A member enrolls",
    "sms_subscribed": "A number subscribes to texts",
    "tier_upgraded": "A member moves up a tier",
    "tier_downgraded": "A member moves down a tier",
    "points_earned": "A member earns points",
    "reward_redeemed": "A member redeems a reward",
    "order_placed": "An order is placed",
    "order_refunded": "An order is refunded",
}
DATE_TRIGGERS = {
    "birthday": "Birthday",
    "points_expiring": "Points about to expire",
    "winback": "Days since the last order",
    "near_next_tier": "Close to the next tier",
    "unredeemed_balance": "A balance that buys a reward, unredeemed",
    "anniversary": "Anniversary of joining",
}
TRIGGERS = EVENT_TRIGGERS | DATE_TRIGGERS
# Events that may end a run under way.
EXIT_EVENTS = {
    "order_placed": "An order is placed",
    "reward_redeemed": "A reward is redeemed",
    "tier_upgraded": "A tier upgrade",
}
STEP_TYPES = {
    "send_sms": "Send a text",
    "wait": "Wait",
    "branch": "Branch",
    "award_points": "Award points",
    "issue_reward": "Issue a reward code",
    "add_tag": "Add a tag",
    "remove_tag": "Remove a tag",
    "unsubscribe": "Unsubscribe (sunset)",
    "end": "End",
}
CONDITIONS = {
    "clicked_last": "Clicked the last text",
    "ordered_since_entry": "Ordered since entering",
    "subscribed": "Still subscribed",
    "tier_is": "Tier is",
    "balance_gte": "Balance at least",
}
MAX_STEPS = 40
STEP_ID = re.compile(r"^[a-z0-9_-]{1,24}$")
TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
MAX_WAIT_DAYS = 366


class FlowInvalid(ProblemError):
    code = "flow-invalid"


@dataclass(frozen=True)
class Problems:
    """Collects problems by where they are ("trigger", "steps.s2.body", …)."""

    found: dict

    def add(self, where: str, message: str) -> None:
        self.found.setdefault(where, []).append(message)


def _whole(value, lo: int, hi: int) -> bool:
    """A whole number (not a bool) from lo to hi."""
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def check_trigger(trigger, problems: Problems, *, tier_ids=(), date_default_at="10:00") -> dict:
    if not isinstance(trigger, dict) or trigger.get("type") not in TRIGGERS:
        problems.add("trigger", f"the trigger is one of: {', '.join(TRIGGERS)}")
        return {}
    kind = trigger["type"]
    clean = {"type": kind}
    if kind in DATE_TRIGGERS:
        at = trigger.get("at", date_default_at)
        if not isinstance(at, str) or not TIME_OF_DAY.match(at):
            problems.add("trigger.at", "a local time of day as HH:MM, e.g. 10:00")
        clean["at"] = at
    settings = {
        "birthday": ("days_before", 0, 0, 60),
        "points_expiring": ("days", 30, 1, 365),
        "winback": ("days", 60, 1, 3650),
        "near_next_tier": ("points", 100, 1, 10_000_000),
        "unredeemed_balance": ("days", 30, 1, 3650),
    }.get(kind)
    if settings:
        name, default, lo, hi = settings
        value = trigger.get(name, default)
        if not _whole(value, lo, hi):
            problems.add(f"trigger.{name}", f"a whole number from {lo} to {hi}")
        clean[name] = value
    if kind == "sms_subscribed" and trigger.get("sources"):
        sources = trigger["sources"]
        if not isinstance(sources, list) or any(x not in ConsentSource.values for x in sources):
            problems.add("trigger.sources", f"any of: {', '.join(ConsentSource.values)}")
        else:
            clean["sources"] = sorted(set(sources))
    if kind in ("tier_upgraded", "tier_downgraded") and trigger.get("tier_id") is not None:
        if trigger["tier_id"] not in tier_ids:
            problems.add("trigger.tier_id", "no such tier")
        clean["tier_id"] = trigger["tier_id"]
    return clean


def _check_condition(condition, where: str, problems: Problems, tier_ids) -> dict:
    if not isinstance(condition, dict) or condition.get("type") not in CONDITIONS:
        problems.add(where, f"a condition: one of {', '.join(CONDITIONS)}")
        return {}
    clean = {"type": condition["type"]}
    if condition["type"] == "tier_is":
        if condition.get("tier_id") not in tier_ids:
            problems.add(f"{where}.tier_id", "no such tier")
        clean["tier_id"] = condition.get("tier_id")
    if condition["type"] == "balance_gte":
        if not _whole(condition.get("points"), 0, 100_000_000):
            problems.add(f"{where}.points", "a whole number of points")
        clean["points"] = condition.get("points")
    return clean


def _check_step(step_id: str, step, problems: Problems, *, tier_ids, reward_ids) -> dict:
    where = f"steps.{step_id}"
    if not STEP_ID.match(step_id):
        problems.add(where, "a step id is 1–24 lower-case letters, digits, - or _")
    if not isinstance(step, dict) or step.get("type") not in STEP_TYPES:
        problems.add(where, f"a step is one of: {', '.join(STEP_TYPES)}")
        return {"type": "end"}
    kind = step["type"]
    clean: dict = {"type": kind}
    if kind == "branch":
        clean["if"] = _check_condition(step.get("if"), f"{where}.if", problems, tier_ids)
        clean["yes"] = step.get("yes")
        clean["no"] = step.get("no")
    elif kind != "end":
        clean["next"] = step.get("next")
    if kind == "send_sms":
        body = step.get("body")
        if not isinstance(body, str) or not body.strip():
            problems.add(f"{where}.body", "write the text")
        else:
            try:
                check_template(body)
            except BodyInvalid as error:
                problems.add(f"{where}.body", str(error))
        clean["body"] = body
    elif kind == "wait":
        for unit, hi in (("days", MAX_WAIT_DAYS), ("hours", 24 * 31), ("minutes", 60 * 24)):
            value = step.get(unit, 0)
            if not _whole(value, 0, hi):
                problems.add(f"{where}.{unit}", f"0 to {hi}")
                value = 0
            clean[unit] = value
        until = step.get("until")
        if until is not None and (not isinstance(until, str) or not TIME_OF_DAY.match(until)):
            problems.add(f"{where}.until", "a local time of day as HH:MM, or nothing")
        clean["until"] = until
        if not any(clean[u] for u in ("days", "hours", "minutes")) and until is None:
            problems.add(where, "wait for a duration, until a time of day, or both")
    elif kind == "award_points":
        if not _whole(step.get("points"), 1, 1_000_000):
            problems.add(f"{where}.points", "1 to 1,000,000 points")
        clean["points"] = step.get("points")
    elif kind == "issue_reward":
        if step.get("reward_id") not in reward_ids:
            problems.add(f"{where}.reward_id", "no such reward")
        clean["reward_id"] = step.get("reward_id")
    elif kind in ("add_tag", "remove_tag"):
        tag = step.get("tag")
        if not isinstance(tag, str) or not 1 <= len(tag.strip()) <= 64:
            problems.add(f"{where}.tag", "a tag of 1 to 64 characters")
        clean["tag"] = tag.strip() if isinstance(tag, str) else tag
    return clean


def successors(step: dict) -> list[str]:
    if step["type"] == "branch":
        return [s for s in (step.get("yes"), step.get("no")) if s]
    return [step["next"]] if step.get("next") else []


def check_steps(graph, problems: Problems, *, tier_ids=(), reward_ids=()) -> dict:
    """The step graph cleaned (unknown keys dropped), with its problems recorded."""
    if not isinstance(graph, dict) or not isinstance(graph.get("steps"), dict):
        problems.add("steps", 'steps are {"start": id, "steps": {id: step, …}}')
        return {"start": None, "steps": {}}
    raw = graph["steps"]
    if not raw:
        problems.add("steps", "a flow has at least one step")
    if len(raw) > MAX_STEPS:
        problems.add("steps", f"at most {MAX_STEPS} steps")
    steps = {
        str(sid): _check_step(str(sid), step, problems, tier_ids=tier_ids, reward_ids=reward_ids)
        for sid, step in raw.items()
    }
    start = graph.get("start")
    if start not in steps:
        problems.add("steps.start", "the first step must be one of the steps")
    for sid, step in steps.items():
        for target in successors(step):
            if target not in steps:
                problems.add(f"steps.{sid}", f"goes to {target!r}, which is not a step")
        if step["type"] == "branch" and not (step.get("yes") or step.get("no")):
            problems.add(f"steps.{sid}", "a branch goes somewhere on yes or on no")
    if problems.found or start not in steps:
        return {"start": start, "steps": steps, **_seq(graph)}
    # Reachable from the start, and no way back to a step already on the path (no loops).
    seen: set[str] = set()
    on_path: set[str] = set()

    def walk(sid: str) -> None:
        if sid in on_path:
            problems.add(f"steps.{sid}", "the flow loops back to this step")
            return
        if sid in seen:
            return
        seen.add(sid)
        on_path.add(sid)
        for target in successors(steps[sid]):
            walk(target)
        on_path.discard(sid)

    walk(start)
    for sid in steps:
        if sid not in seen:
            problems.add(f"steps.{sid}", "no path from the first step reaches this step")
    if not problems.found:
        _check_reward_codes(start, steps, problems)
    return {"start": start, "steps": steps, **_seq(graph)}


def _seq(graph: dict) -> dict:
    """The editor's counter of step ids ("seq": ids are never given twice, so a run waiting
    at a removed step never resumes at a new one)."""
    seq = graph.get("seq")
    return {"seq": seq} if _whole(seq, 0, 10**9) else {}


def _check_reward_codes(start: str, steps: dict, problems: Problems) -> None:
    """{reward_code} in a text needs an issue_reward step on every path before it (the graph
    has no loops; each (step, issued) pair is looked at once)."""
    seen: set[tuple[str, bool]] = set()

    def walk(sid: str, issued: bool) -> None:
        if (sid, issued) in seen:
            return
        seen.add((sid, issued))
        step = steps[sid]
        if step["type"] == "send_sms" and "{reward_code" in (step.get("body") or "") and not issued:
            problems.add(
                f"steps.{sid}.body", "{reward_code} needs an “Issue a reward code” step before it"
            )
        issued = issued or step["type"] == "issue_reward"
        for target in successors(step):
            walk(target, issued)

    walk(start, False)


def check_exits(exit_on, problems: Problems) -> list[str]:
    if not isinstance(exit_on, list) or any(e not in EXIT_EVENTS for e in exit_on):
        problems.add("exit_on", f"exits are any of: {', '.join(EXIT_EVENTS)}")
        return []
    return sorted(set(exit_on))


def step_order(graph: dict) -> list[str]:
    """The steps in the order a reader follows them: depth first from the start, yes before
    no (the diagram's order)."""
    steps, order = graph["steps"], []

    def walk(sid: str) -> None:
        if sid in order or sid not in steps:
            return
        order.append(sid)
        for target in successors(steps[sid]):
            walk(target)

    if graph.get("start"):
        walk(graph["start"])
    return order
