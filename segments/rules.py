"""The rule tree a segment is made of, and its validation.

A tree is JSON. A node is a group or a condition:

    {"all": [node, …]}       every node holds (AND); an empty "all" is everyone
    {"any": [node, …]}       at least one node holds (OR); an empty "any" is no one
    {"not": node}            the node does not hold
    {"field": "<field>", "op": "<operator>", "value": …}      a condition

Example — VIPs (Gold or above) with points expiring in the next 30 days, who can be texted
and have not redeemed in 60 days:

    {"all": [
        {"field": "tier", "op": "at_least", "value": 12},
        {"field": "points_expiring", "op": "gte", "value": 1, "days": 30},
        {"field": "sms_status", "op": "is", "value": "subscribed"},
        {"not": {"field": "redeemed", "op": "within_days", "value": 60}}
    ]}

Who is evaluated (see segments/compiler.py for the SQL): a *person* is a loyalty member or an
SMS subscriber without a member. A member is evaluated together with each of their numbers
(a subscriber row linked to them), or alone when they have none. Conditions on loyalty data
are false for a person who is not a member; conditions on SMS data are false for a person
with no number, except `sms_status`, which is "none" then. `not` is plain negation, so
`{"not": {"field": "clicked", "op": "ever"}}` includes people without a number, while
`{"field": "clicked", "op": "never"}` means "has a number, never clicked".

`validate_rules` checks a whole tree and raises RulesInvalid listing every problem with its
path ("all[2].value: …"); nothing unvalidated is ever compiled.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from loyaltysms.problems import ProblemError
from messaging.models import ConsentSource, MessageKind, SubscriberStatus

MAX_DEPTH = 6  # groups within groups
MAX_CONDITIONS = 60
MAX_DAYS = 3650
MAX_INT = 2_000_000_000
MAX_MONEY = Decimal("999999999999.99")
MAX_LIST = 100

COMPARISONS = ("eq", "gt", "gte", "lt", "lte", "between")
ACTIVITY = ("ever", "never", "within_days")
CHOICE = ("is", "is_not", "in")


class RulesInvalid(ProblemError):
    status_code = 400
    code = "invalid-segment-rules"

    def __init__(self, problems: list[str]):
        self.problems = problems
        detail = problems[0] if len(problems) == 1 else f"{len(problems)} problems in the rules"
        super().__init__(detail, errors={"rules": problems})


class ValueProblem(ValueError):
    """A condition's value is wrong; the message says what is expected."""


# --- value checks: each returns the cleaned value or raises ValueProblem --------------------
def _int(low: int, high: int = MAX_INT) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueProblem(f"must be a whole number from {low} to {high}")
        if not low <= value <= high:
            raise ValueProblem(f"must be from {low} to {high}, not {value}")
        return value

    return check


def _money(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueProblem('must be an amount like "49.90"')
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueProblem(f'must be an amount like "49.90", not {value!r}') from None
    if not amount.is_finite() or amount < 0 or amount > MAX_MONEY:
        raise ValueProblem(f"must be an amount from 0 to {MAX_MONEY}")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueProblem("must have at most two decimals")
    return amount


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueProblem("must be true or false")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueProblem(f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    return check


def _code(letters: int, what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not (
            isinstance(value, str)
            and len(value) == letters
            and value.isascii()
            and value.isalpha()
            and value.isupper()
        ):
            raise ValueProblem(f"must be {what} ({letters} capital letters), not {value!r}")
        return value

    return check


def _zone(value: Any) -> str:
    if not isinstance(value, str) or value not in zoneinfo.available_timezones():
        raise ValueProblem(f"must be an IANA time zone like America/Chicago, not {value!r}")
    return value


def _tag(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise ValueProblem("must be a tag: text of 1 to 64 characters")
    return value


def _list_of(check: Callable[[Any], Any]) -> Callable[[Any], list]:
    def check_list(value: Any) -> list:
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            raise ValueProblem(f"must be a list of 1 to {MAX_LIST} items")
        return [check(item) for item in value]

    return check_list


def _no_value(value: Any) -> None:
    if value is not None:
        raise ValueProblem("takes no value")


def _between(check: Callable[[Any], Any]) -> Callable[[Any], list]:
    def check_range(value: Any) -> list:
        if not isinstance(value, list) or len(value) != 2:
            raise ValueProblem("must be [lowest, highest]")
        low, high = check(value[0]), check(value[1])
        if low > high:
            raise ValueProblem(f"lowest ({value[0]}) is above highest ({value[1]})")
        return [low, high]

    return check_range


def _comparisons(check: Callable[[Any], Any]) -> dict[str, Callable[[Any], Any]]:
    ops: dict[str, Callable[[Any], Any]] = dict.fromkeys(COMPARISONS[:-1], check)
    ops["between"] = _between(check)
    return ops


def _activity() -> dict[str, Callable[[Any], Any]]:
    return {"ever": _no_value, "never": _no_value, "within_days": _int(1, MAX_DAYS)}


def _choice(check: Callable[[Any], Any]) -> dict[str, Callable[[Any], Any]]:
    return {"is": check, "is_not": check, "in": _list_of(check)}


@dataclass(frozen=True)
class FieldSpec:
    level: str  # "person", "member" (loyalty data) or "subscriber" (SMS data)
    ops: dict[str, Callable[[Any], Any]]
    help: str
    extra: dict[str, Callable[[Any], Any]] | None = None  # more keys a condition may carry
    required_extra: tuple[str, ...] = ()


SMS_STATUSES = tuple(SubscriberStatus.values)
SOURCES = tuple(ConsentSource.values)

FIELDS: dict[str, FieldSpec] = {
    "member": FieldSpec("person", {"is": _bool}, "is a loyalty member (true) or not (false)"),
    "tier": FieldSpec(
        "member",
        {"is": _int(1), "is_not": _int(1), "at_least": _int(1)},
        "the member's tier (a tier id); at_least: that tier or a higher one",
    ),
    "points_balance": FieldSpec("member", _comparisons(_int(0)), "points available now"),
    "points_expiring": FieldSpec(
        "member",
        _comparisons(_int(0)),
        "points that expire within `days` days from now",
        extra={"days": _int(1, MAX_DAYS)},
        required_extra=("days",),
    ),
    "birthday": FieldSpec(
        "member",
        {"in_month": _int(1, 12), "within_next_days": _int(0, 366)},
        "birthday in a month, or within the next N days (today counts; in the brand's zone)",
    ),
    "days_since_last_order": FieldSpec(
        "member",
        _comparisons(_int(0, MAX_DAYS * 10)),
        "whole days since the last order; members without orders never match",
    ),
    "orders_count": FieldSpec("member", _comparisons(_int(0)), "orders placed"),
    "lifetime_spend": FieldSpec("member", _comparisons(_money), "spend over all orders"),
    "redeemed": FieldSpec("member", _activity(), "redeemed a reward (cancelled ones don't count)"),
    "tags": FieldSpec(
        "member",
        {"has": _tag, "has_any": _list_of(_tag), "has_all": _list_of(_tag)},
        "the member's tags",
    ),
    "sms_status": FieldSpec(
        "subscriber", _choice(_one_of(SMS_STATUSES)), "the number's status; none without one"
    ),
    "subscription_source": FieldSpec(
        "subscriber", _choice(_one_of(SOURCES)), "where the number's consent came from"
    ),
    "subscribed_days": FieldSpec(
        "subscriber",
        _comparisons(_int(0, MAX_DAYS * 10)),
        "whole days since a subscribed number subscribed (others never match)",
    ),
    "clicked": FieldSpec("subscriber", _activity(), "clicked a tracked link"),
    "received": FieldSpec(
        "subscriber",
        _activity(),
        "was sent a text (sent or delivered); optional kind: marketing or transactional",
        extra={"kind": _one_of(tuple(MessageKind.values))},
    ),
    "replied": FieldSpec("subscriber", _activity(), "texted us something that isn't a keyword"),
    "country": FieldSpec(
        "subscriber", _choice(_code(2, "an ISO 3166 country code")), "the number's country"
    ),
    "state": FieldSpec(
        "subscriber",
        _choice(_code(2, "a state or province code")),
        "the number's US state or Canadian province",
    ),
    "timezone": FieldSpec(
        "subscriber", _choice(_zone), "the number's stored zone, else the member's"
    ),
}

CONDITION_KEYS = {"field", "op", "value"}


@dataclass
class _Check:
    problems: list[str]
    conditions: int = 0
    tier_ids: set[int] | None = None


def _walk(node: Any, path: str, depth: int, check: _Check) -> Any:
    where = path or "rules"
    if not isinstance(node, dict):
        check.problems.append(f"{where}: must be an object (a group or a condition)")
        return None
    groups = [key for key in ("all", "any", "not") if key in node]
    if groups:
        if len(node) != 1:
            check.problems.append(
                f"{where}: a group has exactly one key (all, any or not); "
                f"found {', '.join(sorted(map(str, node)))}"
            )
            return None
        if depth >= MAX_DEPTH:
            check.problems.append(f"{where}: groups nest too deep (at most {MAX_DEPTH} levels)")
            return None
        key = groups[0]
        if key == "not":
            inner = _walk(node["not"], f"{path}.not" if path else "not", depth + 1, check)
            return {"not": inner}
        items = node[key]
        if not isinstance(items, list):
            check.problems.append(f"{where}.{key}: must be a list of rules")
            return None
        prefix = f"{path}.{key}" if path else key
        return {
            key: [_walk(item, f"{prefix}[{n}]", depth + 1, check) for n, item in enumerate(items)]
        }
    return _condition(node, where, check)


def _condition(node: dict, where: str, check: _Check) -> Any:
    check.conditions += 1
    if check.conditions == MAX_CONDITIONS + 1:
        check.problems.append(f"{where}: too many conditions (at most {MAX_CONDITIONS})")
    field = node.get("field")
    if "field" not in node:
        check.problems.append(
            f"{where}: not a rule: give all, any or not (a group) or field, op and value"
        )
        return None
    spec = FIELDS.get(field) if isinstance(field, str) else None
    if spec is None:
        check.problems.append(
            f"{where}.field: unknown field {field!r}; known fields: {', '.join(FIELDS)}"
        )
        return None
    op = node.get("op")
    value_check = spec.ops.get(op) if isinstance(op, str) else None
    if value_check is None:
        check.problems.append(
            f"{where}.op: {op!r} is not an operator of {field}; use one of {', '.join(spec.ops)}"
        )
        return None
    extra = spec.extra or {}
    unknown = set(node) - CONDITION_KEYS - set(extra)
    if unknown:
        check.problems.append(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    cleaned = {"field": field, "op": op}
    try:
        value = value_check(node.get("value"))
    except ValueProblem as problem:
        check.problems.append(f"{where}.value: {field} {op} {problem}")
    else:
        if value is not None:
            cleaned["value"] = value
    for key, extra_check in extra.items():
        if key not in node:
            if key in spec.required_extra:
                check.problems.append(f"{where}.{key}: {field} needs {key}")
            continue
        try:
            cleaned[key] = extra_check(node[key])
        except ValueProblem as problem:
            check.problems.append(f"{where}.{key}: {problem}")
    tier = cleaned.get("value") if field == "tier" else None
    if tier is not None and check.tier_ids is not None and tier not in check.tier_ids:
        check.problems.append(f"{where}.value: no tier with id {cleaned['value']}")
    return cleaned


def validate_rules(rules: Any, *, tier_ids: set[int] | None = None) -> dict:
    """The tree, cleaned (amounts as Decimal), or RulesInvalid naming every problem.

    `tier_ids`: the brand's tiers; a tier condition naming another id is refused (pass None
    only to check the shape, as a form does before it knows the brand)."""
    check = _Check(problems=[], tier_ids=tier_ids)
    cleaned = _walk(rules, "", 0, check)
    if check.problems:
        raise RulesInvalid(check.problems)
    return cleaned


def conditions(rules: dict) -> list[dict]:
    """Every condition of a (valid) tree, in order."""
    found: list[dict] = []

    def visit(node: dict) -> None:
        if "not" in node:
            visit(node["not"])
        elif "all" in node or "any" in node:
            for item in node.get("all", node.get("any")):
                visit(item)
        else:
            found.append(node)

    visit(rules)
    return found
