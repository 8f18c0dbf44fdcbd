"""The flow editor's form: a flow's fields and its steps as rows the marketer edits, turned
into the arguments of automations.services.flows (which checks them: automations.flows.spec).

Rows are posted as step-<n>-<field>; buttons add a step of a type, remove a row, or redraw
(a type changed, so the row shows that type's fields). The service's problems, keyed by
where they are ("steps.s2.body", "trigger.at"), are shown beside the field they are about.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from automations.flows.spec import (
    CONDITIONS,
    DATE_TRIGGERS,
    EVENT_TRIGGERS,
    EXIT_EVENTS,
    MAX_STEPS,
    STEP_TYPES,
    TRIGGERS,
)
from automations.models import EntryLimit, Flow, FlowAudience
from messaging.models import ConsentSource

# The trigger setting that is "N" for each trigger type, with its label and default.
TRIGGER_N = {
    "birthday": ("days_before", "Days before the birthday (0: on the day)", 0),
    "points_expiring": ("days", "Points expiring within (days)", 30),
    "winback": ("days", "Days since the last order", 60),
    "near_next_tier": ("points", "Points short of the next tier, at most", 100),
    "unredeemed_balance": ("days", "Days without redeeming", 30),
}
STEP_FIELDS = ("body", "days", "hours", "minutes", "until", "if", "tier_id", "points",
               "reward_id", "tag", "next", "yes", "no")  # fmt: skip
INT_FIELDS = {"days", "hours", "minutes", "points", "tier_id", "reward_id"}
NEW_STEP = {
    "send_sms": {"body": ""},
    "wait": {"days": 1, "hours": 0, "minutes": 0, "until": None},
    "branch": {"if": {"type": "clicked_last"}},
    "award_points": {"points": 100},
    "issue_reward": {"reward_id": None},
    "add_tag": {"tag": ""},
    "remove_tag": {"tag": ""},
    "unsubscribe": {},
    "end": {},
}


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return value if value not in ("", None) else None


@dataclass
class StepRow:
    id: str
    type: str
    data: dict
    errors: dict = field(default_factory=dict)  # field ("if_tier_id"; "row") → messages

    @property
    def condition(self) -> str:
        return (self.data.get("if") or {}).get("type", "")

    @property
    def label(self) -> str:
        return STEP_TYPES.get(self.type, self.type)


@dataclass
class FlowEditor:
    fields: dict
    rows: list[StepRow]
    start: str
    errors: dict = field(default_factory=dict)  # field → messages
    seq: int = 0  # the highest step number given so far (ids are never given twice)

    # --- building ---------------------------------------------------------------------------

    @classmethod
    def from_flow(cls, flow: Flow) -> FlowEditor:
        steps = flow.steps.get("steps", {})
        return cls(
            fields={
                "name": flow.name,
                "description": flow.description,
                "trigger": dict(flow.trigger),
                "entry_limit": flow.entry_limit,
                "audience": flow.audience,
                "segment_id": flow.segment_id,
                "exit_on": list(flow.exit_on),
            },
            rows=[
                StepRow(sid, step["type"], {k: v for k, v in step.items() if k != "type"})
                for sid, step in steps.items()
            ],
            start=flow.steps.get("start") or "",
            seq=flow.steps.get("seq") or 0,
        )

    @classmethod
    def from_post(cls, post) -> FlowEditor:
        kind = post.get("trigger_type", "")
        trigger: dict = {"type": kind}
        if kind in DATE_TRIGGERS:
            trigger["at"] = post.get("trigger_at") or "10:00"
        if kind in TRIGGER_N:
            name = TRIGGER_N[kind][0]
            trigger[name] = _int(post.get("trigger_n"))
        if kind in ("tier_upgraded", "tier_downgraded") and post.get("trigger_tier_id"):
            trigger["tier_id"] = _int(post.get("trigger_tier_id"))
        if kind == "sms_subscribed" and post.getlist("trigger_sources"):
            trigger["sources"] = post.getlist("trigger_sources")
        rows = []
        try:
            count = int(post.get("step_count", 0))
        except (TypeError, ValueError):
            count = 0
        seen: set[str] = set()
        for n in range(max(0, min(count, MAX_STEPS + 1))):
            prefix = f"step-{n}-"
            if f"{prefix}id" not in post:
                continue
            step_type = post.get(f"{prefix}type", "end")
            data = {}
            for name in STEP_FIELDS:
                value = post.get(prefix + name)
                if name == "if":
                    data["if"] = {"type": value or "clicked_last"}
                    if post.get(f"{prefix}if_tier_id"):
                        data["if"]["tier_id"] = _int(post.get(f"{prefix}if_tier_id"))
                    if post.get(f"{prefix}if_points") not in (None, ""):
                        data["if"]["points"] = _int(post.get(f"{prefix}if_points"))
                    continue
                if value is None:
                    continue
                if name in INT_FIELDS:
                    value = (
                        _int(value)
                        if value != ""
                        else (0 if name in {"days", "hours", "minutes"} else None)
                    )
                elif name in ("next", "yes", "no", "until"):
                    value = value or None
                data[name] = value
            row = StepRow(post.get(f"{prefix}id", "").strip(), step_type, data)
            if row.id in seen:
                row.errors["row"] = ["Another step has this id: give each step its own."]
            seen.add(row.id)
            rows.append(row)
        return cls(
            fields={
                "name": post.get("name", ""),
                "description": post.get("description", ""),
                "trigger": trigger,
                "entry_limit": post.get("entry_limit", EntryLimit.EVERY_TIME),
                "audience": post.get("audience", FlowAudience.ANYONE),
                "segment_id": _int(post.get("segment_id")) or None,
                "exit_on": post.getlist("exit_on"),
            },
            rows=rows,
            start=post.get("start", ""),
            seq=seq if isinstance(seq := _int(post.get("seq")), int) else 0,
        )

    # --- editing --------------------------------------------------------------------------

    def apply(self, action: str) -> None:
        """add:<type> adds a step after the last (the last step leading nowhere now leads
        to it); remove:<n> removes a row (and every way to it)."""
        if action.startswith("add:") and action[4:] in STEP_TYPES:
            step_type = action[4:]
            numbers = [int(r.id[1:]) for r in self.rows if r.id[:1] == "s" and r.id[1:].isdigit()]
            self.seq = max([self.seq, *numbers]) + 1
            new = StepRow(f"s{self.seq}", step_type, dict(NEW_STEP[step_type]))
            if step_type not in ("end",) and step_type != "branch":
                new.data["next"] = None
            if self.rows:
                last = self.rows[-1]
                if last.type not in ("branch", "end") and not last.data.get("next"):
                    last.data["next"] = new.id
            else:
                self.start = new.id
            self.rows.append(new)
        elif action.startswith("remove:"):
            index = _int(action[7:])
            if isinstance(index, int) and 0 <= index < len(self.rows):
                gone = self.rows.pop(index).id
                for row in self.rows:
                    for way in ("next", "yes", "no"):
                        if row.data.get(way) == gone:
                            row.data[way] = None
                if self.start == gone:
                    self.start = self.rows[0].id if self.rows else ""

    # --- for the service --------------------------------------------------------------------

    def steps(self) -> dict:
        steps = {}
        for row in self.rows:
            step = {"type": row.type}
            wanted = _fields_of(row.type)
            for name in wanted:
                if name in row.data:
                    step[name] = row.data[name]
            steps[row.id] = step
        return {"start": self.start, "steps": steps, "seq": self.seq}

    def service_fields(self) -> dict:
        return {**self.fields, "steps": self.steps()}

    def attach(self, problems: dict) -> None:
        """The service's problems beside their fields and rows."""
        rows = {row.id: row for row in self.rows}
        for where, messages in problems.items():
            parts = where.split(".")
            if parts[0] == "steps" and len(parts) >= 2 and parts[1] in rows:
                rows[parts[1]].errors.setdefault("_".join(parts[2:]) or "row", []).extend(messages)
            elif parts[0] == "steps" and len(parts) >= 2 and parts[1] == "start":
                self.errors.setdefault("start", []).extend(messages)
            elif parts[0] == "trigger":
                name = {"at": "trigger_at", "tier_id": "trigger_tier_id"}.get(
                    parts[1] if len(parts) > 1 else "",
                    "trigger_n" if len(parts) > 1 else "trigger_type",
                )
                self.errors.setdefault(name, []).extend(messages)
            else:
                self.errors.setdefault(parts[0], []).extend(messages)

    # --- for the template -------------------------------------------------------------------

    @property
    def trigger_type(self) -> str:
        return self.fields["trigger"].get("type", "")

    @property
    def trigger_n(self):
        spec = TRIGGER_N.get(self.trigger_type)
        return self.fields["trigger"].get(spec[0], spec[2]) if spec else None

    @property
    def trigger_n_label(self) -> str:
        spec = TRIGGER_N.get(self.trigger_type)
        return spec[1] if spec else ""

    @property
    def is_date(self) -> bool:
        return self.trigger_type in DATE_TRIGGERS

    def step_ids(self) -> list[str]:
        return [row.id for row in self.rows]


def _fields_of(step_type: str) -> tuple[str, ...]:
    return (
        {
            "send_sms": ("body", "next"),
            "wait": ("days", "hours", "minutes", "until", "next"),
            "branch": ("if", "yes", "no"),
            "award_points": ("points", "next"),
            "issue_reward": ("reward_id", "next"),
            "add_tag": ("tag", "next"),
            "remove_tag": ("tag", "next"),
            "unsubscribe": ("next",),
            "end": (),
        }[step_type]
        if step_type in STEP_TYPES
        else ()
    )


CHOICES = {
    "event_triggers": list(EVENT_TRIGGERS.items()),
    "date_triggers": list(DATE_TRIGGERS.items()),
    "triggers": TRIGGERS,
    "step_types": list(STEP_TYPES.items()),
    "conditions": list(CONDITIONS.items()),
    "exit_events": list(EXIT_EVENTS.items()),
    "entry_limits": EntryLimit.choices,
    "audiences": FlowAudience.choices,
    "sources": ConsentSource.choices,
}
