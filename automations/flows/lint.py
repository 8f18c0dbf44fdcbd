"""A flow's compliance risks, shown before it is switched on (warnings, not errors: the
dispatcher enforces the rules on every text anyway — these say where the flow would fight
them).

- no opt-out language: the brand turned the automatic footer off and a text doesn't say how
  to stop (CTIA: every marketing program tells people how to opt out);
- sends planned at night: a date trigger or a wait "until" a time outside the brand's sending
  window (those texts would be held to the morning, or expire);
- too many texts in 48 hours: a path with more texts within 48 hours than the brand's cap
  lets through (the rest would be held), or more than three (people opt out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from automations.flows.spec import DATE_TRIGGERS, successors
from automations.models import Flow
from messaging.models import MessagingSettings

STOP_WORDS = re.compile(r"\b(STOP|UNSUBSCRIBE|CANCEL|END|QUIT|STOPALL|OPTOUT)\b")
BURST_WINDOW = timedelta(hours=48)
BURST_MOST = 3
MAX_PATHS = 10_000


@dataclass(frozen=True)
class LintWarning:
    where: str  # "trigger", "steps.<id>", "flow"
    code: str
    message: str


def _hour(at: str) -> float:
    hour, minute = (int(x) for x in at.split(":"))
    return hour + minute / 60


def _outside(at: str, settings: MessagingSettings) -> bool:
    hour = _hour(at)
    return not settings.window_start_hour <= hour < settings.window_end_hour


def flow_lint(flow: Flow, settings: MessagingSettings) -> list[LintWarning]:
    warnings: list[LintWarning] = []
    steps = flow.steps["steps"]
    sends = {sid: step for sid, step in steps.items() if step["type"] == "send_sms"}
    window = f"{settings.window_start_hour}:00–{settings.window_end_hour}:00"
    if not settings.opt_out_footer:
        for sid, step in sends.items():
            if not STOP_WORDS.search((step.get("body") or "").upper()):
                warnings.append(
                    LintWarning(
                        f"steps.{sid}",
                        "no-opt-out",
                        "This text doesn't say how to stop (e.g. “Reply STOP to opt out”), and "
                        "the automatic opt-out footer is off in SMS settings.",
                    )
                )
    trigger = flow.trigger
    at = trigger.get("at", "10:00")
    if sends and trigger["type"] in DATE_TRIGGERS and _outside(at, settings):
        warnings.append(
            LintWarning(
                "trigger",
                "night-send",
                f"People enter at {at} local time, outside the sending window "
                f"({window}): their first text waits for the morning.",
            )
        )
    for sid, step in steps.items():
        night = step["type"] == "wait" and step.get("until") and _outside(step["until"], settings)
        if night and any(s in sends for s in _reachable_before_wait(steps, step.get("next"))):
            warnings.append(
                LintWarning(
                    f"steps.{sid}",
                    "night-send",
                    f"Waits until {step['until']}, outside the sending window ({window}): "
                    "the text after it is held to the morning.",
                )
            )
    most = _most_texts_in(flow.steps, BURST_WINDOW)
    capped = settings.cap_messages * max(1, 48 // settings.cap_hours)  # the cap's 48 hours
    if most > min(BURST_MOST, capped):
        why = (
            f"Your cap ({settings.cap_messages} per {settings.cap_hours} h) holds the rest "
            "back; space them out with waits."
            if most > capped
            else "More than three in two days is when people start to opt out."
        )
        warnings.append(
            LintWarning(
                "flow", "too-many", f"Up to {most} texts can go to one person in 48 hours. {why}"
            )
        )
    return warnings


def _reachable_before_wait(steps: dict, start: str | None) -> list[str]:
    """Steps reached from `start` before the next wait."""
    found, todo = [], [start]
    while todo:
        sid = todo.pop()
        if not sid or sid in found or sid not in steps:
            continue
        found.append(sid)
        if steps[sid]["type"] != "wait":
            todo.extend(successors(steps[sid]))
    return found


def _wait_of(step: dict) -> timedelta:
    """The least a wait step waits (an "until" may add up to a day; counted as nothing)."""
    return timedelta(
        days=step.get("days", 0), hours=step.get("hours", 0), minutes=step.get("minutes", 0)
    )


def _most_texts_in(graph: dict, span: timedelta) -> int:
    """The most texts on any path whose send times (by the least waits) fit in `span`.
    Paths that meet again are walked again: at most MAX_PATHS of them (a flow of 39 branches
    has 2^39), then the most found so far stands."""
    steps, best, walked = graph["steps"], 0, 0

    def walk(sid: str | None, times: tuple[timedelta, ...], at: timedelta) -> None:
        nonlocal best, walked
        if not sid or sid not in steps or walked >= MAX_PATHS:
            walked += 1
            return
        step = steps[sid]
        if step["type"] == "send_sms":
            times = (*(t for t in times if t > at - span), at)  # those within span of this
            best = max(best, len(times))
        if step["type"] == "wait":
            at = at + _wait_of(step)
        for target in successors(step) or [None]:
            walk(target, times, at)

    walk(graph.get("start"), (), timedelta(0))
    return best
