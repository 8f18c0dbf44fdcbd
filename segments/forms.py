"""The segment builder: a rule tree (segments/rules.py) as rows of form inputs, and back.

What the builder offers comes from rules.FIELDS: the fields, their operators and, for each
operator, its value check, read for the input it needs (a whole number and its bounds, an
amount, a choice and its options, a list, a range, nothing). Added here are only the words
people read (operator names, units) and the two values that mean something to people only
by name: tier ids (the brand's tiers) and month numbers.

Inputs are named after the row's place in the builder: the root group is "r", its rows
"r_0", "r_1", theirs "r_1_0", … Every row posts "node" (its id; the order of these is the
order of the rows) and "<id>-kind": a group's "all", "any", "none" (not any) or "notall"
(not all), or "cond" for a condition, which also posts "<id>-field", "<id>-op",
"<id>-value" (repeated for a list of choices), "<id>-value2" (a range's highest),
"<id>-x-<key>" (a field's extra keys, e.g. points_expiring's days) and "<id>-not".

Problems RulesInvalid names by path ("all[2].not.value: …") are placed on the row at that
path: `Builder.tree()` records each row's path as it builds the tree.
"""

from __future__ import annotations

import calendar
import functools
import inspect
import json
import re
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from dataclasses import field as default
from typing import Any

from django import forms

from segments.rules import FIELDS, MAX_DEPTH, RulesInvalid, validate_rules

EMPTY_TREE: dict = {"all": []}
MAX_ROWS = 200  # a posted builder never holds more rows than this (rules allow 60 conditions)
ID = re.compile(r"r(?:_\d{1,3}){0,12}")
GROUP_KINDS = {"all": ("all", False), "any": ("any", False), "none": ("any", True)}
GROUP_KINDS["notall"] = ("all", True)
GROUP_LABELS = [("all", "all"), ("any", "any"), ("none", "none"), ("notall", "not all")]
GROUP_EMPTY = {
    "all": "No conditions here yet: this matches everyone.",
    "notall": "No conditions here yet: this matches no one.",
    "any": "No conditions here yet: this matches no one.",
    "none": "No conditions here yet: this matches everyone.",
}
LEVELS = {"person": "Everyone", "member": "Loyalty", "subscriber": "SMS"}

# Words only: a field or operator missing here is still offered, with its key humanized.
FIELD_LABELS = {
    "member": "Loyalty member",
    "sms_status": "SMS status",
    "timezone": "Time zone",
    "redeemed": "Redeemed a reward",
    "clicked": "Clicked a link",
    "received": "Was sent a text",
    "replied": "Replied",
}
OP_LABELS = {
    "eq": "is exactly",
    "gt": "is more than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
    "between": "is between",
    "ever": "ever",
    "never": "never",
    "within_days": "in the last",
    "is": "is",
    "is_not": "is not",
    "in": "is one of",
    "at_least": "is at least",
    "in_month": "is in",
    "within_next_days": "is within the next",
    "has": "has the tag",
    "has_any": "has any of the tags",
    "has_all": "has all of the tags",
}
EXTRA_LABELS = {"days": "within the next", "kind": "of kind"}


def humanize(key: str) -> str:
    return key.replace("_", " ").capitalize()


def field_label(name: str) -> str:
    return FIELD_LABELS.get(name) or humanize(name)


# --- reading the value checks of rules.py ---------------------------------------------------
@dataclass(frozen=True)
class ValueSpec:
    """The input a value check asks for."""

    kind: str  # int, money, bool, choice, code, zone, tag, none; text for a check not known
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    many: bool = False  # a list of values
    range: bool = False  # [lowest, highest]


_PLAIN_CHECKS = {
    "_money": "money",
    "_bool": "bool",
    "_zone": "zone",
    "_tag": "tag",
    "_no_value": "none",
}


@functools.cache
def describe(check: Callable[[Any], Any]) -> ValueSpec:
    """What `check` (one of rules.py's value checks) accepts, from the function that made it
    and the values it closes over (_int's bounds, _one_of's choices, _list_of's item check)."""
    maker = check.__qualname__.split(".<locals>")[0]
    closed = inspect.getclosurevars(check).nonlocals
    if maker == "_list_of":
        return replace(describe(closed["check"]), many=True)
    if maker == "_between":
        return replace(describe(closed["check"]), range=True)
    if maker == "_int":
        return ValueSpec("int", low=closed["low"], high=closed["high"])
    if maker == "_one_of":
        return ValueSpec("choice", choices=tuple(closed["choices"]))
    if maker == "_code":
        return ValueSpec("code")
    return ValueSpec(_PLAIN_CHECKS.get(maker, "text"))


def _is_month(name: str, op: str, spec: ValueSpec) -> bool:
    return spec.kind == "int" and (spec.low, spec.high) == (1, 12) and "month" in op


def _to_json(spec: ValueSpec, raw: str) -> Any:
    """A posted string as the JSON value the check expects; anything that doesn't convert is
    passed on as it is, so the check's own message explains what is wrong."""
    raw = raw.strip()
    if raw == "":
        return None
    if spec.kind == "int":
        try:
            return int(raw)
        except ValueError:
            return raw
    if spec.kind == "bool":
        return {"true": True, "false": False}.get(raw, raw)
    if spec.kind == "code":
        return raw.upper()
    return raw  # amounts stay text ("49.90"): the check reads them exactly


def _from_json(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# --- the rows -------------------------------------------------------------------------------
@dataclass
class Row:
    id: str
    kind: str  # a group kind (GROUP_KINDS) or "cond"
    children: list[Row] = default(default_factory=list)
    field: str = ""
    op: str = ""
    values: list[str] = default(default_factory=list)  # one, or several for a list of choices
    value2: str = ""
    extras: dict[str, str] = default(default_factory=dict)
    negate: bool = False
    errors: list[str] = default(default_factory=list)
    invalid: set[str] = default(default_factory=set)  # inputs named by problems: value, op, …
    path: str | None = None  # where the row's node is in the tree; None: left out of it
    autofocus: str = ""  # the input to focus after the builder is drawn
    depth: int = 0  # nesting of the node in the tree (a "not" counts, as in rules.py)
    widgets: dict = default(default_factory=dict)  # set by Builder.decorate

    @property
    def is_group(self) -> bool:
        return self.kind != "cond"

    @property
    def is_root(self) -> bool:
        return self.id == "r"

    @property
    def value(self) -> str:
        return self.values[0] if self.values else ""

    @property
    def spec(self):
        return FIELDS.get(self.field)

    @property
    def value_spec(self) -> ValueSpec | None:
        spec = self.spec
        check = spec.ops.get(self.op) if spec is not None else None
        return describe(check) if check is not None else None

    @property
    def label(self) -> str:
        return field_label(self.field) if self.field else "condition"

    @property
    def empty_hint(self) -> str:
        return GROUP_EMPTY[self.kind]

    @property
    def can_nest(self) -> bool:
        # A group inside this one (and a "not" around it) must stay within MAX_DEPTH.
        return self.depth + 2 < MAX_DEPTH

    def node(self) -> dict:
        """The condition's node (without its "not")."""
        spec, value_spec = self.spec, self.value_spec
        node: dict[str, Any] = {"field": self.field, "op": self.op}
        if value_spec is not None and value_spec.kind != "none":
            if value_spec.range:
                low, high = self.value, self.value2
                node["value"] = [_to_json(value_spec, low), _to_json(value_spec, high)]
            elif value_spec.many and value_spec.kind == "choice":
                node["value"] = [_to_json(value_spec, v) for v in self.values if v.strip()]
            elif value_spec.many:
                items = ",".join(self.values).split(",")
                node["value"] = [_to_json(value_spec, v) for v in items if v.strip()]
            else:
                node["value"] = _to_json(value_spec, self.value)
        for key, check in ((spec.extra or {}) if spec else {}).items():
            raw = self.extras.get(key, "")
            if raw.strip():  # a blank required one is named by the rules ("needs days")
                node[key] = _to_json(describe(check), raw)
        return node


# A new condition's operator: "at least" is what a marketer asks for most; else the first.
PREFERRED_OPS = ("gte", "at_least")


def _first_op(spec) -> str:
    return next((op for op in PREFERRED_OPS if op in spec.ops), next(iter(spec.ops)))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Builder:
    def __init__(self, root: Row):
        self.root = root
        self.blank: list[Row] = []  # conditions without a field yet (left out of the tree)

    # --- reading ----------------------------------------------------------------------------
    @classmethod
    def from_post(cls, data) -> Builder:
        rows: dict[str, Row] = {}
        order: list[str] = []
        for row_id in data.getlist("node")[:MAX_ROWS]:
            if not ID.fullmatch(row_id) or row_id in rows:
                continue
            kind = data.get(f"{row_id}-kind", "")
            if kind in GROUP_KINDS:
                rows[row_id] = Row(row_id, kind)
            elif kind == "cond" and row_id != "r":
                name = data.get(f"{row_id}-field", "")
                spec = FIELDS.get(name)
                op = data.get(f"{row_id}-op", "")
                if spec is None:
                    name, op = "", ""
                elif op not in spec.ops:
                    op = _first_op(spec)  # the field changed
                rows[row_id] = Row(
                    row_id,
                    "cond",
                    field=name,
                    op=op,
                    values=[v[:2000] for v in data.getlist(f"{row_id}-value")[:100]],
                    value2=data.get(f"{row_id}-value2", "")[:100],
                    extras={
                        key: data.get(f"{row_id}-x-{key}", "")[:100]
                        for key in ((spec.extra or {}) if spec else {})
                    },
                    negate=data.get(f"{row_id}-not") == "1",
                )
            else:
                continue
            order.append(row_id)
        root = rows.get("r") or Row("r", "all")
        rows["r"] = root
        for row_id in order:
            if row_id == "r":
                continue
            parent = rows.get(row_id.rsplit("_", 1)[0])
            if parent is not None and parent.is_group:
                parent.children.append(rows[row_id])
        # Only rows reachable from the root count (an orphan's parent was not posted).
        return cls(root)

    @classmethod
    def from_tree(cls, tree: dict) -> Builder:
        """From a tree whose shape is valid (validate_rules without tiers)."""
        if not any(key in tree for key in ("all", "any")) and not (
            "not" in tree and any(key in tree["not"] for key in ("all", "any", "not"))
        ):
            tree = {"all": [tree]}  # a condition (or "not" of one) at the top
        return cls(_row_from(tree, "r"))

    # --- changing ---------------------------------------------------------------------------
    def rows(self) -> Iterator[Row]:
        stack = [self.root]
        while stack:
            row = stack.pop()
            yield row
            stack.extend(reversed(row.children))

    def find(self, row_id: str) -> Row | None:
        return next((row for row in self.rows() if row.id == row_id), None)

    def apply(self, action: str) -> None:
        """A button of the builder: "add:<group>", "group:<group>", "remove:<row>"."""
        verb, _, row_id = action.partition(":")
        row = self.find(row_id)
        if row is None:
            return
        if verb in ("add", "group") and row.is_group:
            new = Row(_next_id(row), "cond", autofocus="field")
            if verb == "group":
                inner = Row(f"{new.id}_0", "cond")
                new = Row(new.id, "any" if row.kind in ("all", "notall") else "all", [inner])
                new.autofocus = "kind"
            row.children.append(new)
        elif verb == "remove" and not row.is_root:
            parent = self.find(row_id.rsplit("_", 1)[0])
            if parent is not None:
                parent.children = [child for child in parent.children if child.id != row_id]
                parent.autofocus = "add"

    # --- the tree ---------------------------------------------------------------------------
    def tree(self) -> dict:
        """The rule tree of the rows; conditions without a field are left out (self.blank)."""
        self.blank = []
        return self._node(self.root, "", 0)

    def _node(self, row: Row, path: str, depth: int) -> dict:
        negate = row.negate
        key = None
        if row.is_group:
            key, negate = GROUP_KINDS[row.kind]
        inner_path = _join(path, "not") if negate else path
        row.path, row.depth = inner_path, depth + negate
        if row.is_group:
            children = []
            for child in row.children:
                if not child.is_group and not child.field:
                    child.path = None
                    self.blank.append(child)
                    continue
                child_path = f"{_join(inner_path, key)}[{len(children)}]"
                children.append(self._node(child, child_path, row.depth + 1))
            body: dict = {key: children}
        else:
            body = row.node()
        return {"not": body} if negate else body

    def flag_blank(self) -> bool:
        """Conditions still without a field get a problem (saving needs every row complete)."""
        for row in self.blank:
            row.errors.append("Choose a field, or remove this condition.")
            row.invalid.add("field")
        return bool(self.blank)

    def attach(self, problems: list[str]) -> None:
        """Put each of RulesInvalid's problems on the row it names (tree() ran first)."""
        placed = [row for row in self.rows() if row.path is not None]
        for problem in problems:
            where, _, message = problem.partition(": ")
            if where == "rules" or where.startswith("rules."):
                where = where[len("rules") :].lstrip(".")
            row = max(
                (r for r in placed if _within(where, r.path)),
                key=lambda r: len(r.path),
                default=self.root,
            )
            rest = where[len(row.path) :].lstrip(".")
            if rest:
                row.invalid.add(rest)
            blank = not row.is_group and not "".join(row.values).strip() and not row.value2
            if rest == "value" and blank:
                message = "give a value"  # the check's message is about the value's form
            row.errors.append(_readable(row, message))

    def json(self) -> str:
        return json.dumps(self.tree(), indent=2)

    # --- drawing ----------------------------------------------------------------------------
    def decorate(self, brand: BrandChoices) -> None:
        """The inputs of each condition, for the templates."""
        self.tree()  # paths and depths
        for row in self.rows():
            if not row.is_group and row.field:
                row.widgets = _widgets(row, brand)

    @property
    def uses_zones(self) -> bool:
        return any(
            (row.value_spec or ValueSpec("")).kind == "zone" for row in self.rows() if row.field
        )


def _next_id(group: Row) -> str:
    used = [int(child.id.rsplit("_", 1)[1]) for child in group.children]
    return f"{group.id}_{max(used, default=-1) + 1}"


def _within(where: str, path: str) -> bool:
    return not path or where == path or where.startswith((path + ".", path + "["))


def _readable(row: Row, message: str) -> str:
    """A problem as it reads next to its row: the row shows the field and operator already."""
    if not row.is_group and row.field:
        if row.field == "tier" and message.startswith("no tier with id"):
            return "That tier no longer exists: choose another."
        for prefix in (f"{row.field} {row.op} ", f"{row.field} "):
            if message.startswith(prefix):
                rest = message[len(prefix) :]
                if prefix.endswith(f"{row.op} "):
                    return rest[:1].upper() + rest[1:] + "."
                return f"{field_label(row.field)} {rest}."
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _row_from(node: dict, row_id: str) -> Row:
    if "not" in node:
        inner = node["not"]
        if "not" in inner:  # not(not X): a "not all" group around "not X"
            return Row(row_id, "notall", [_row_from(inner, f"{row_id}_0")])
        row = _row_from(inner, row_id)
        if row.is_group:
            row.kind = "notall" if row.kind == "all" else "none"
        else:
            row.negate = True
        return row
    for key in ("all", "any"):
        if key in node:
            children = [_row_from(child, f"{row_id}_{n}") for n, child in enumerate(node[key])]
            return Row(row_id, key, children)
    spec = FIELDS[node["field"]]
    value_spec = describe(spec.ops[node["op"]])
    value = node.get("value")
    row = Row(row_id, "cond", field=node["field"], op=node["op"])
    if value_spec.range:
        row.values, row.value2 = [_from_json(value[0])], _from_json(value[1])
    elif value_spec.many and value_spec.kind == "choice":
        row.values = [_from_json(v) for v in value]
    elif value_spec.many:
        row.values = [", ".join(_from_json(v) for v in value)]
    elif value_spec.kind != "none":
        row.values = [_from_json(value)]
    row.extras = {key: _from_json(node[key]) for key in (spec.extra or {}) if key in node}
    return row


def builder_from_json(text: str) -> tuple[Builder | None, list[str]]:
    """The advanced editor's text: a builder, or the problems (JSON syntax, or the tree's shape
    as validate_rules sees it; tier ids are checked when the rules are counted or saved)."""
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as error:
        return None, [f"Not JSON: {error.msg} (line {error.lineno}, column {error.colno})."]
    try:
        validate_rules(tree)
    except RulesInvalid as error:
        return None, error.problems
    return Builder.from_tree(tree), []


# --- inputs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BrandChoices:
    """What the inputs offer that depends on the brand."""

    tiers: list[tuple[int, str]]
    currency: str
    points_name: str


MONTHS = [(str(n), calendar.month_name[n]) for n in range(1, 13)]


@functools.cache
def zones() -> frozenset[str]:
    """The time zones a zone condition accepts (rules.py checks against the same set)."""
    return frozenset(zoneinfo.available_timezones())


def field_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """The field select: rules.FIELDS grouped by what they read (loyalty or SMS data)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, spec in FIELDS.items():
        groups.setdefault(LEVELS.get(spec.level, humanize(spec.level)), []).append(
            (name, field_label(name))
        )
    return list(groups.items())


def _unit(name: str, op: str, spec: ValueSpec, brand: BrandChoices) -> str:
    if spec.kind == "money":
        return brand.currency
    if "days" in op or "days" in name:
        return "days"
    if name.startswith("points"):
        return brand.points_name
    if name.endswith("_count"):
        return name.removesuffix("_count")
    return ""


def _widget(row: Row, spec: ValueSpec, brand: BrandChoices, *, name: str, label: str) -> dict:
    """One input (or two for a range, or a set of checkboxes) for a value of `spec`."""
    widget = {
        "name": f"{row.id}-{name}",
        "id": f"{row.id}-{name}",
        "label": label,
        "range": spec.range,
        "invalid": name in row.invalid or name.removeprefix("x-") in row.invalid,
    }
    if row.field == "tier" and spec.kind == "int":
        options = [(str(pk), tier) for pk, tier in brand.tiers]
        if row.value and row.value not in {pk for pk, _ in options}:
            options.append((row.value, f"Tier #{row.value} (removed)"))
        return {**widget, "type": "select", "options": options, "placeholder": "Choose a tier…"}
    if _is_month(row.field, row.op, spec):
        return {**widget, "type": "select", "options": MONTHS, "placeholder": "Choose a month…"}
    if spec.kind == "bool":
        return {**widget, "type": "select", "options": [("true", "yes"), ("false", "no")]}
    if spec.kind == "choice":
        options = [(value, humanize(value)) for value in spec.choices]
        if spec.many:
            return {**widget, "type": "checks", "options": options}
        return {**widget, "type": "select", "options": options, "placeholder": "Choose…"}
    if spec.kind in ("int", "money"):
        return {
            **widget,
            "type": "number",
            "min": spec.low if spec.kind == "int" else 0,
            "max": spec.high if spec.kind == "int" else None,
            "step": "1" if spec.kind == "int" else "0.01",
            "inputmode": "numeric" if spec.kind == "int" else "decimal",
            # An extra key's unit comes from its name (points_expiring's "days").
            "unit": _unit(row.field, row.op if name == "value" else name, spec, brand),
        }
    if spec.kind == "none":
        return {**widget, "type": "none"}
    hints = {"code": "US", "zone": "America/Chicago", "tag": "vip"}
    example = hints.get(spec.kind, "")
    return {
        **widget,
        "type": "text",
        "list": "zones" if spec.kind == "zone" else "",
        "placeholder": f"{example}, …" if spec.many and example else example,
        "help": "Separate several with commas." if spec.many else "",
        "uppercase": spec.kind == "code",
    }


def _help(spec) -> str:
    """The field's help from rules.py in the builder's words: operators by their labels, an
    extra key in backquotes ("within `days` days") as the number it is."""
    text = re.sub(r"`\w+`", "N", spec.help)
    for op in spec.ops:
        text = re.sub(rf"\b{op}:", f"“{OP_LABELS.get(op, humanize(op).lower())}”:", text)
    return text


def _widgets(row: Row, brand: BrandChoices) -> dict:
    spec = row.spec
    value_spec = row.value_spec
    value = _widget(row, value_spec, brand, name="value", label=f"{row.label}: value")
    value["value"], value["value2"], value["values"] = row.value, row.value2, row.values
    extras = []
    for key, check in (spec.extra or {}).items():
        extra_spec = describe(check)
        extra = _widget(row, extra_spec, brand, name=f"x-{key}", label=f"{row.label}: {key}")
        extra["value"] = row.extras.get(key, "")
        extra["values"] = [extra["value"]]
        extra["before"] = EXTRA_LABELS.get(key, humanize(key).lower())
        if key not in spec.required_extra and extra["type"] == "select":
            extra["placeholder"] = f"any {key}"
        extras.append(extra)
    return {
        "ops": [(op, OP_LABELS.get(op) or humanize(op).lower()) for op in spec.ops],
        "value": value,
        "extras": extras,
        "help": _help(spec),
    }


# --- the name -------------------------------------------------------------------------------
class SegmentNameForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What your team will see when choosing who a campaign goes to.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
