# ruff: noqa: S608 - SQL assembled from the constants in this module; values are parameters
"""A validated rule tree → one SQL statement with parameters.

The people a segment selects from (see segments/rules.py) are two disjoint sets, so the SQL
has two branches:

  members      programs_member m, LEFT JOIN each subscriber row linked to it (s) only when a
               condition reads SMS data; a member with two numbers is two (m, s) pairs, and
               matches when either pair does (counted once: count(DISTINCT m.id)).
  subscribers  messaging_subscriber s with no member; conditions on loyalty data are FALSE
               there, so a tree that needs a member folds the whole branch away.

Every condition compiles to a predicate that is never NULL (TRUE or FALSE, so `not` is plain
negation), or to a constant that folds through its groups. Conditions over other tables
(expiring lots, redemptions, clicks, texts, replies) each become ONE grouped derived table
per table, LEFT JOINed on the member or subscriber, with the widest window any condition
needs; the conditions then compare its columns. Joins plan as hash joins however the
conditions nest under OR and NOT, where EXISTS and IN would become per-row subplans.
Except at the top: a condition AND-ed directly into the WHERE clause (the root, or an item
of an `all` there) that only asks whether a record exists (redeemed, clicked, received,
replied: ever, never, within N days; points expiring > 0) is a (NOT) EXISTS, which the
planner turns into a semi or anti join, as a person would write it.

When the tree is member conditions AND conditions on the numbers alone, the members branch
is one row per member (see _members_by_person), for the count and the sample alike; the
sample then looks up each listed member's lowest matching number only for its `limit` rows.

Scoping: this is raw SQL, outside the tenant-scoped managers, so every table in it carries
`tenant_id = %s` with the brand's id. Identifiers come from the constants here; every value
is a parameter.
"""

from __future__ import annotations

import calendar
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from loyaltysms.models import Tenant
from messaging.models import InboundKind, MessageStatus, SubscriberStatus
from programs.models import RedemptionStatus
from segments.rules import FIELDS, conditions

DAY = timedelta(days=1)
# Columns of messaging_subscriber that are NOT NULL.
PLAIN_SUBSCRIBER_COLUMNS = {"s.status", "s.source", "s.country", "s.region", "s.timezone"}
RECEIVED_STATUSES = [MessageStatus.SENT.value, MessageStatus.DELIVERED.value]
CMP_SQL = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# The records activity conditions look for, as `a`: alias → (table, time column, which rows,
# their parameters, the column naming the person).
_ACTIVITY_SOURCES = {
    "r": (
        "programs_redemption",
        "created_at",
        "a.status <> %s",
        (RedemptionStatus.CANCELLED.value,),
        "member_id",
    ),
    "c": (
        "messaging_shortlink",
        "first_clicked_at",
        "a.first_clicked_at IS NOT NULL",
        (),
        "subscriber_id",
    ),
    "i": (
        "messaging_inboundmessage",
        "created_at",
        "a.kind = %s",
        (InboundKind.REPLY.value,),
        "subscriber_id",
    ),
    "o": (
        "messaging_outboundmessage",
        "sent_at",
        "a.status = ANY(%s) AND a.sent_at IS NOT NULL",
        (RECEIVED_STATUSES,),
        "subscriber_id",
    ),
}


@dataclass(frozen=True)
class Frag:
    sql: str
    params: tuple = ()


Pred = Frag | bool


def _and(parts: list[Pred]) -> Pred:
    if any(part is False for part in parts):
        return False
    frags = [part for part in parts if part is not True]
    if not frags:
        return True
    if len(frags) == 1:
        return frags[0]
    return Frag(
        "(" + " AND ".join(f.sql for f in frags) + ")", tuple(p for f in frags for p in f.params)
    )


def _or(parts: list[Pred]) -> Pred:
    if any(part is True for part in parts):
        return True
    frags = [part for part in parts if part is not False]
    if not frags:
        return False
    if len(frags) == 1:
        return frags[0]
    return Frag(
        "(" + " OR ".join(f.sql for f in frags) + ")", tuple(p for f in frags for p in f.params)
    )


def _not(part: Pred) -> Pred:
    if isinstance(part, bool):
        return not part
    return Frag(f"NOT {part.sql}" if part.sql.startswith("(") else f"NOT ({part.sql})", part.params)


def _nonnull(column: str, condition: str, *params) -> Frag:
    """`condition` on a nullable `column`, FALSE (not NULL) where the column is NULL. Written
    as `column IS NOT NULL AND …` rather than COALESCE(…, FALSE) so that at the top of a tree
    it stays a plain condition the planner can serve from an index."""
    return Frag(f"({column} IS NOT NULL AND {condition})", params)


def birthday_keys(today: date, days: int) -> list[int]:
    """month * 100 + day of every birthday celebrated from today to today + days: a 29
    February birthday is celebrated on 28 February in other years (as the bonus sweep does)."""
    keys = set()
    for offset in range(min(days, 366) + 1):
        day = today + timedelta(days=offset)
        keys.add(day.month * 100 + day.day)
        if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
            keys.add(229)
    return sorted(keys)


@dataclass
class _Joins:
    """The derived tables a branch needs, filled while its conditions compile."""

    expiring_days: dict[int, str] = field(default_factory=dict)  # days → column
    redeemed: bool = False
    redeemed_since: datetime | None = None  # None with `redeemed`: all history
    activity: dict[str, datetime | None] = field(default_factory=dict)  # c/o/i → since
    received_kinds: dict[str | None, str] = field(default_factory=dict)  # kind → column

    def widen(self, current: datetime | None, cutoff: datetime | None, first: bool):
        if first:
            return cutoff
        if current is None or cutoff is None:
            return None
        return min(current, cutoff)


@dataclass
class Compiled:
    sql: str
    params: tuple


class _Branch:
    def __init__(
        self,
        *,
        tenant: Tenant,
        now: datetime,
        members: bool,
        with_subscriber: bool,
        certain: bool = False,
    ):
        self.tenant = tenant
        self.now = now
        self.members = members  # m present (the members branch)
        self.with_subscriber = with_subscriber  # s present
        # s is a row for sure (not the NULL side of a LEFT JOIN): its NOT NULL columns are
        # compared plainly, which keeps the planner's estimates (and plans) those of a
        # hand-written query.
        self.subscriber_certain = with_subscriber and (certain or not members)
        self.joins = _Joins()
        self.at_top = False  # the condition compiling now is AND-ed at the top of the tree

    # --- the tree -----------------------------------------------------------------------
    def node(self, node: dict, *, top: bool = False) -> Pred:
        """`top`: the node's predicate is AND-ed directly into the WHERE clause (the root, and
        the items of an `all` there), so a (NOT) EXISTS in it becomes a semi or anti join."""
        if "all" in node:
            return _and([self.node(item, top=top) for item in node["all"]])
        if "any" in node:
            return _or([self.node(item) for item in node["any"]])
        if "not" in node:
            return _not(self.node(node["not"]))
        self.at_top = top
        try:
            return self.condition(node)
        finally:
            self.at_top = False

    def condition(self, node: dict) -> Pred:
        name = node["field"]
        level = FIELDS[name].level
        if level == "member" and not self.members:
            return False
        return getattr(self, f"_{name}")(node["op"], node.get("value"), node)

    # --- helpers --------------------------------------------------------------------------
    def _since(self, days: int) -> datetime:
        return self.now - days * DAY

    @staticmethod
    def _compare(column: str, op: str, value) -> Frag:
        if op == "between":
            return Frag(f"{column} BETWEEN %s AND %s", (value[0], value[1]))
        return Frag(f"{column} {CMP_SQL[op]} %s", (value,))

    def _days_since(self, column: str, op: str, value) -> Pred:
        """Whole days elapsed since `column` (NULL: never matches), as index-friendly bounds:
        days ≥ n ⇔ column ≤ now - n days; days < n ⇔ column > now - n days."""
        if op == "between":
            low, high = value
        else:
            low, high = {
                "eq": (value, value),
                "gt": (value + 1, None),
                "gte": (value, None),
                "lt": (None, value - 1),
                "lte": (None, value),
            }[op]
        parts = [Frag(f"{column} IS NOT NULL")]
        if low is not None:
            parts.append(Frag(f"{column} <= %s", (self._since(low),)))
        if high is not None:
            parts.append(Frag(f"{column} > %s", (self._since(high + 1),)))
        return _and(parts)

    def _choice(self, column: str, op: str, value) -> Frag:
        if self.subscriber_certain and column in PLAIN_SUBSCRIBER_COLUMNS:
            return self._compare_plain(column, op, value)
        if op == "is":
            return _nonnull(column, f"{column} = %s", value)
        if op == "is_not":
            return _nonnull(column, f"{column} <> %s", value)
        return _nonnull(column, f"{column} = ANY(%s)", list(value))

    @staticmethod
    def _compare_plain(column: str, op: str, value) -> Frag:
        if op == "is":
            return Frag(f"{column} = %s", (value,))
        if op == "is_not":
            return Frag(f"{column} <> %s", (value,))
        return Frag(f"{column} = ANY(%s)", (list(value),))

    def _activity(self, alias: str, op: str, value) -> Pred:
        if not self.with_subscriber:
            return False
        cutoff = self._since(value) if op == "within_days" else None
        if self.at_top:
            return self._activity_exists(alias, op, cutoff)
        first = alias not in self.joins.activity
        self.joins.activity[alias] = self.joins.widen(self.joins.activity.get(alias), cutoff, first)
        return self._activity_leaf(f"{alias}.last_at", op, cutoff)

    def _activity_exists(
        self, alias: str, op: str, cutoff: datetime | None, kind: str | None = None
    ) -> Frag:
        """An activity condition AND-ed at the top as (NOT) EXISTS: the planner makes it a
        semi or anti join that stops at a person's first record, where the grouped join
        would read and group every record of the brand."""
        table, at, where, params, key = _ACTIVITY_SOURCES[alias]
        correlated = "m.id" if key == "member_id" else "s.id"
        if kind is not None:
            where, params = f"{where} AND a.kind = %s", (*params, kind)
        if cutoff is not None:
            where, params = f"{where} AND a.{at} >= %s", (*params, cutoff)
        exists = (
            f"EXISTS (SELECT 1 FROM {table} a WHERE a.tenant_id = %s"
            f" AND a.{key} = {correlated} AND {where})"
        )
        return Frag(f"NOT {exists}" if op == "never" else exists, (self.tenant.pk, *params))

    @staticmethod
    def _activity_leaf(column: str, op: str, cutoff: datetime | None) -> Pred:
        if op == "ever":
            return Frag(f"{column} IS NOT NULL")
        if op == "never":
            # a record exists (the subscriber or member row) and nothing happened
            return Frag(f"{column} IS NULL")
        return _nonnull(column, f"{column} >= %s", cutoff)

    # --- the person ---------------------------------------------------------------------
    def _member(self, op, value, node) -> Pred:
        return value is self.members

    # --- loyalty data (only in the members branch) ----------------------------------------
    def _tier(self, op, value, node) -> Pred:
        if op == "is":
            return _nonnull("m.tier_id", "m.tier_id = %s", value)
        if op == "is_not":
            return Frag("m.tier_id IS DISTINCT FROM %s", (value,))
        # ARRAY(…) runs once before the scan (an InitPlan, which parallel workers share);
        # `IN (SELECT …)` would be a hashed SubPlan, which keeps the scan to one process.
        return _nonnull(
            "m.tier_id",
            "m.tier_id = ANY(ARRAY(SELECT t.id FROM programs_tier t WHERE t.tenant_id = %s AND "
            "t.threshold >= (SELECT b.threshold FROM programs_tier b "
            "WHERE b.tenant_id = %s AND b.id = %s)))",
            self.tenant.pk,
            self.tenant.pk,
            value,
        )

    def _points_balance(self, op, value, node) -> Pred:
        return self._compare("m.points_balance", op, value)

    def _points_expiring(self, op, value, node) -> Pred:
        days = node["days"]
        if self.at_top and (op, value) in (("gt", 0), ("gte", 1)):
            # "Has points expiring": open lots hold at least one point each, so the sum is
            # positive exactly when one exists; a semi join that stops at the first.
            return Frag(
                "EXISTS (SELECT 1 FROM programs_pointslot l WHERE l.tenant_id = %s"
                " AND l.member_id = m.id AND l.remaining > 0 AND l.matured"
                " AND l.expires_at > %s AND l.expires_at <= %s)",
                (self.tenant.pk, self.now, self.now + days * DAY),
            )
        column = self.joins.expiring_days.setdefault(days, f"d{len(self.joins.expiring_days)}")
        return self._compare(f"COALESCE(x.{column}, 0)", op, value)

    def _birthday(self, op, value, node) -> Pred:
        if op == "in_month":
            return _nonnull("m.birthday_month", "m.birthday_month = %s", value)
        today = self.now.astimezone(zoneinfo.ZoneInfo(self.tenant.timezone)).date()
        return _nonnull(
            "m.birthday_month",
            "(m.birthday_month * 100 + m.birthday_day) = ANY(%s)",
            birthday_keys(today, value),
        )

    def _days_since_last_order(self, op, value, node) -> Pred:
        return self._days_since("m.last_order_at", op, value)

    def _orders_count(self, op, value, node) -> Pred:
        return self._compare("m.orders_count", op, value)

    def _lifetime_spend(self, op, value, node) -> Pred:
        return self._compare("m.lifetime_spend", op, value)

    def _redeemed(self, op, value, node) -> Pred:
        cutoff = self._since(value) if op == "within_days" else None
        if self.at_top:
            return self._activity_exists("r", op, cutoff)
        first = not self.joins.redeemed
        self.joins.redeemed = True
        self.joins.redeemed_since = self.joins.widen(self.joins.redeemed_since, cutoff, first)
        return self._activity_leaf("r.last_at", op, cutoff)

    def _tags(self, op, value, node) -> Pred:
        if op == "has":
            return Frag("m.tags @> %s::varchar(64)[]", ([value],))
        if op == "has_all":
            return Frag("m.tags @> %s::varchar(64)[]", (list(value),))
        return Frag("m.tags && %s::varchar(64)[]", (list(value),))

    # --- SMS data -------------------------------------------------------------------------
    def _sms_status(self, op, value, node) -> Pred:
        if not self.with_subscriber:
            status = SubscriberStatus.NONE.value
            if op == "is":
                return value == status
            if op == "is_not":
                return value != status
            return status in value
        if self.subscriber_certain:
            return self._choice("s.status", op, value)
        return self._choice(f"COALESCE(s.status, '{SubscriberStatus.NONE.value}')", op, value)

    def _subscription_source(self, op, value, node) -> Pred:
        if not self.with_subscriber:
            return False
        return self._choice("s.source", op, value)

    def _subscribed_days(self, op, value, node) -> Pred:
        if not self.with_subscriber:
            return False
        return _and(
            [
                _nonnull("s.status", "s.status = %s", SubscriberStatus.SUBSCRIBED.value),
                self._days_since("s.subscribed_at", op, value),
            ]
        )

    def _clicked(self, op, value, node) -> Pred:
        return _and([self._has_number(), self._activity("c", op, value)])

    def _received(self, op, value, node) -> Pred:
        if not self.with_subscriber:
            return False
        kind = node.get("kind")
        if self.at_top:
            cutoff = self._since(value) if op == "within_days" else None
            exists = self._activity_exists("o", op, cutoff, kind)
            return _and([self._has_number(), exists])
        column = self.joins.received_kinds.setdefault(kind, f"last_{kind}" if kind else "last_at")
        cutoff = self._since(value) if op == "within_days" else None
        first = "o" not in self.joins.activity
        self.joins.activity["o"] = self.joins.widen(self.joins.activity.get("o"), cutoff, first)
        return _and([self._has_number(), self._activity_leaf(f"o.{column}", op, cutoff)])

    def _replied(self, op, value, node) -> Pred:
        return _and([self._has_number(), self._activity("i", op, value)])

    def _has_number(self) -> Pred:
        if not self.with_subscriber:
            return False
        return True if self.subscriber_certain else Frag("s.id IS NOT NULL")

    def _country(self, op, value, node) -> Pred:
        if not self.with_subscriber:
            return False
        return self._choice("s.country", op, value)

    def _state(self, op, value, node) -> Pred:
        if not self.with_subscriber:
            return False
        return self._choice("s.region", op, value)

    def _timezone(self, op, value, node) -> Pred:
        if self.members and self.with_subscriber:
            zone = "COALESCE(NULLIF(s.timezone, ''), m.timezone)"
        elif self.members:
            zone = "m.timezone"
        else:
            zone = "s.timezone"
        return self._choice(zone, op, value)

    # --- the derived tables ---------------------------------------------------------------
    def join_sql(self) -> Frag:
        tenant = self.tenant.pk
        parts: list[Frag] = []
        joins = self.joins
        if joins.expiring_days:
            columns = ", ".join(
                f"SUM(l.remaining) FILTER (WHERE l.expires_at <= %s) AS {column}"
                for column in joins.expiring_days.values()
            )
            until = [self.now + days * DAY for days in joins.expiring_days]
            parts.append(
                Frag(
                    f" LEFT JOIN (SELECT l.member_id, {columns} FROM programs_pointslot l"
                    " WHERE l.tenant_id = %s AND l.remaining > 0 AND l.matured"
                    " AND l.expires_at > %s AND l.expires_at <= %s"
                    " GROUP BY l.member_id) x ON x.member_id = m.id",
                    (*until, tenant, self.now, max(until)),
                )
            )
        if joins.redeemed:
            parts.append(self._activity_join("r", joins.redeemed_since))
        for alias, since in joins.activity.items():
            parts.append(self._activity_join(alias, since))
        return Frag("".join(p.sql for p in parts), tuple(x for p in parts for x in p.params))

    def _activity_join(self, alias: str, since: datetime | None) -> Frag:
        """The person's latest record (per kind for texts), since `since` (None: ever)."""
        table, at, where, params, key = _ACTIVITY_SOURCES[alias]
        columns, column_params = f"MAX(a.{at}) AS last_at", ()
        if alias == "o":
            pieces, kinds = [], []
            for kind, column in self.joins.received_kinds.items():
                if kind is None:
                    pieces.append(f"MAX(a.{at}) AS {column}")
                else:
                    pieces.append(f"MAX(a.{at}) FILTER (WHERE a.kind = %s) AS {column}")
                    kinds.append(kind)
            columns, column_params = ", ".join(pieces), tuple(kinds)
        if since is not None:
            where += f" AND a.{at} >= %s"
            params = (*params, since)
        person = "m.id" if key == "member_id" else "s.id"
        return Frag(
            f" LEFT JOIN (SELECT a.{key}, {columns} FROM {table} a"
            f" WHERE a.tenant_id = %s AND {where} GROUP BY a.{key}) {alias}"
            f" ON {alias}.{key} = {person}",
            (*column_params, self.tenant.pk, *params),
        )


def _uses_sms_data(rules: dict) -> bool:
    return any(FIELDS[c["field"]].level == "subscriber" for c in conditions(rules))


@dataclass(frozen=True)
class _Parts:
    """One branch's FROM … WHERE, or None when its predicate is constant FALSE."""

    from_where: Frag
    joined: bool  # one row per (member, number) pair: s is in FROM
    # One row per member: the lowest matching number's id (a correlated subquery), or NULL.
    number: Frag = Frag("NULL::bigint")


def _members_branch(tenant: Tenant, rules: dict, now: datetime, join: bool) -> _Parts | None:
    branch = _Branch(tenant=tenant, now=now, members=True, with_subscriber=join)
    pred = branch.node(rules, top=True)
    if pred is False:
        return None
    joins = branch.join_sql()
    subscriber = (
        Frag(
            " LEFT JOIN messaging_subscriber s ON s.tenant_id = %s AND s.member_id = m.id",
            (tenant.pk,),
        )
        if join
        else Frag("")
    )
    where = Frag("m.tenant_id = %s", (tenant.pk,))
    if pred is not True:
        where = Frag(f"{where.sql} AND {pred.sql}", (*where.params, *pred.params))
    return _Parts(
        Frag(
            f"FROM programs_member m{subscriber.sql}{joins.sql} WHERE {where.sql}",
            (*subscriber.params, *joins.params, *where.params),
        ),
        join,
    )


def _pure_sms(node: dict) -> bool:
    """Only SMS data of the number itself (no column of the member): evaluable per number."""
    return all(
        c["field"] == "member"
        or (FIELDS[c["field"]].level == "subscriber" and c["field"] != "timezone")
        for c in conditions(node)
    )


_NOT_APPLICABLE = object()


def _members_by_person(tenant: Tenant, rules: dict, now: datetime):
    """The members branch with one row per member (no DISTINCT), when the tree is
    member conditions AND conditions on the numbers alone: the member matches when one of
    their numbers does, or, having none, when the conditions hold without a number.

    Conditions on numbers become `m.id IN (numbers matching)`, a semi join like a
    hand-written EXISTS; when having no number would match too, "no failing number without
    a matching one", two anti joins like a hand-written NOT EXISTS (neither groups every
    number by member). Returns _Parts, None (nobody matches) or _NOT_APPLICABLE (conditions
    mix a member's and a number's data below the top: the (m, s) pairs are needed)."""
    children = rules.get("all", [rules])
    member_part = [c for c in children if not _uses_sms_data(c)]
    sms_part = {"all": [c for c in children if _uses_sms_data(c)]}
    if not _pure_sms(sms_part):
        return _NOT_APPLICABLE
    outer = _Branch(tenant=tenant, now=now, members=True, with_subscriber=False)
    member_pred = outer.node({"all": member_part}, top=True)
    without_number = outer.node(sms_part)  # constant: no member column in sms_part

    def numbers(*, failing: bool = False) -> tuple[Pred, Frag]:
        """The numbers' own predicate (or its negation) and the joins it reads."""
        branch = _Branch(tenant=tenant, now=now, members=True, with_subscriber=True, certain=True)
        pred = _not(branch.node(sms_part)) if failing else branch.node(sms_part, top=True)
        return pred, branch.join_sql()

    per_number, joins = numbers()
    if member_pred is False or (per_number is False and without_number is False):
        return None
    tenant_id = tenant.pk
    number_pred: Pred = True
    if per_number is False:  # only members without a number
        number_pred = Frag(
            "NOT EXISTS (SELECT 1 FROM messaging_subscriber s WHERE s.tenant_id = %s"
            " AND s.member_id = m.id)",
            (tenant_id,),
        )
    elif without_number is False:  # a matching number is needed
        number_where = _and(
            [Frag("s.tenant_id = %s AND s.member_id IS NOT NULL", (tenant_id,)), per_number]
        )
        number_pred = Frag(
            f"m.id IN (SELECT s.member_id FROM messaging_subscriber s{joins.sql}"
            f" WHERE {number_where.sql})",
            (*joins.params, *number_where.params),
        )
    elif per_number is not True:  # a matching number, or none at all
        failing, failing_joins = numbers(failing=True)
        assert failing is not False  # per_number is not True
        failing_where = _and(
            [Frag("s.tenant_id = %s AND s.member_id IS NOT NULL", (tenant_id,)), failing]
        )
        matching_where = _and(
            [Frag("s.tenant_id = %s AND s.member_id = f.member_id", (tenant_id,)), per_number]
        )
        number_pred = Frag(
            "NOT EXISTS (SELECT 1 FROM (SELECT s.member_id FROM messaging_subscriber"
            f" s{failing_joins.sql} WHERE {failing_where.sql}) f WHERE f.member_id = m.id"
            f" AND NOT EXISTS (SELECT 1 FROM messaging_subscriber s{joins.sql}"
            f" WHERE {matching_where.sql}))",
            (
                *failing_joins.params,
                *failing_where.params,
                *joins.params,
                *matching_where.params,
            ),
        )
    number = Frag("NULL::bigint")
    if per_number is not False:
        lowest_where = _and(
            [Frag("s.tenant_id = %s AND s.member_id = m.id", (tenant_id,)), per_number]
        )
        number = Frag(
            f"(SELECT min(s.id) FROM messaging_subscriber s{joins.sql} WHERE {lowest_where.sql})",
            (*joins.params, *lowest_where.params),
        )
    pred = _and([member_pred, number_pred])
    member_joins = outer.join_sql()
    where = Frag("m.tenant_id = %s", (tenant_id,))
    if pred is not True:
        where = Frag(f"{where.sql} AND {pred.sql}", (*where.params, *pred.params))
    return _Parts(
        Frag(
            f"FROM programs_member m{member_joins.sql} WHERE {where.sql}",
            (*member_joins.params, *where.params),
        ),
        False,
        number,
    )


def _subscribers_branch(tenant: Tenant, rules: dict, now: datetime) -> _Parts | None:
    branch = _Branch(tenant=tenant, now=now, members=False, with_subscriber=True, certain=True)
    pred = branch.node(rules, top=True)
    if pred is False:
        return None
    joins = branch.join_sql()
    where = Frag("s.tenant_id = %s AND s.member_id IS NULL", (tenant.pk,))
    if pred is not True:
        where = Frag(f"{where.sql} AND {pred.sql}", (*where.params, *pred.params))
    return _Parts(
        Frag(
            f"FROM messaging_subscriber s{joins.sql} WHERE {where.sql}",
            (*joins.params, *where.params),
        ),
        True,
    )


def _members_part(tenant: Tenant, rules: dict, now: datetime) -> _Parts | None:
    """One row per member where the tree allows it, else the (member, number) pairs."""
    uses_sms_data = _uses_sms_data(rules)
    members = _members_by_person(tenant, rules, now) if uses_sms_data else _NOT_APPLICABLE
    if members is _NOT_APPLICABLE:
        members = _members_branch(tenant, rules, now, join=uses_sms_data)
    return members


def count_sql(tenant: Tenant, rules: dict, now: datetime) -> Compiled:
    """SELECT the number of people matching."""
    parts = []
    members = _members_part(tenant, rules, now)
    if members is not None:
        counted = "count(DISTINCT m.id)" if members.joined else "count(*)"
        parts.append(
            Frag(f"(SELECT {counted} {members.from_where.sql})", members.from_where.params)
        )
    subscribers = _subscribers_branch(tenant, rules, now)
    if subscribers is not None:
        parts.append(
            Frag(f"(SELECT count(*) {subscribers.from_where.sql})", subscribers.from_where.params)
        )
    if not parts:
        return Compiled("SELECT 0", ())
    return Compiled(
        "SELECT " + " + ".join(p.sql for p in parts), tuple(x for p in parts for x in p.params)
    )


def people_sql(tenant: Tenant, rules: dict, now: datetime, limit: int) -> Compiled:
    """SELECT member_id, subscriber_id of up to `limit` matching people, newest first (a member
    with several matching numbers once, with the lowest of them).

    Each branch takes its own newest `limit` rows (sorted as the whole is), so only those
    look up their number and the union sorts at most 2 × `limit` rows."""
    parts = []
    members = _members_part(tenant, rules, now)
    if members is not None:
        if members.joined:  # pairs: the first of each member's is its lowest matching number
            parts.append(
                Frag(
                    "(SELECT DISTINCT ON (m.created_at, m.id) m.id AS member_id,"
                    f" s.id AS subscriber_id, m.created_at AS at {members.from_where.sql}"
                    " ORDER BY m.created_at DESC, m.id DESC, s.id LIMIT %s)",
                    (*members.from_where.params, limit),
                )
            )
        else:
            parts.append(
                Frag(
                    f"(SELECT m.id AS member_id, {members.number.sql} AS subscriber_id,"
                    f" m.created_at AS at {members.from_where.sql}"
                    " ORDER BY m.created_at DESC, m.id DESC LIMIT %s)",
                    (*members.number.params, *members.from_where.params, limit),
                )
            )
    subscribers = _subscribers_branch(tenant, rules, now)
    if subscribers is not None:
        parts.append(
            Frag(
                "(SELECT NULL::bigint AS member_id, s.id AS subscriber_id, s.created_at AS at "
                f"{subscribers.from_where.sql} ORDER BY s.created_at DESC, s.id DESC LIMIT %s)",
                (*subscribers.from_where.params, limit),
            )
        )
    if not parts:
        return Compiled("SELECT NULL::bigint, NULL::bigint WHERE FALSE", ())
    union = " UNION ALL ".join(p.sql for p in parts)
    return Compiled(
        f"SELECT member_id, subscriber_id FROM ({union}) people"
        " ORDER BY at DESC, member_id DESC NULLS LAST, subscriber_id DESC LIMIT %s",
        (*(x for p in parts for x in p.params), limit),
    )


def subscriber_ids_sql(
    tenant: Tenant, rules: dict, now: datetime, *, subscribed_only: bool
) -> Compiled:
    """SELECT id of every subscriber row (number) matching; each row at most once (a number
    belongs to one member at most, and the branches are disjoint). With `subscribed_only`,
    only numbers whose status is subscribed now (campaigns check again at dispatch)."""
    if subscribed_only:
        rules = {"all": [rules, {"field": "sms_status", "op": "is", "value": "subscribed"}]}
    parts = []
    members = _members_branch(tenant, rules, now, join=True)
    if members is not None:
        parts.append(
            Frag(
                f"SELECT s.id {members.from_where.sql} AND s.id IS NOT NULL",
                members.from_where.params,
            )
        )
    subscribers = _subscribers_branch(tenant, rules, now)
    if subscribers is not None:
        parts.append(
            Frag(f"SELECT s.id {subscribers.from_where.sql}", subscribers.from_where.params)
        )
    if not parts:
        return Compiled("SELECT NULL::bigint WHERE FALSE", ())
    return Compiled(
        " UNION ALL ".join(p.sql for p in parts), tuple(x for p in parts for x in p.params)
    )


def people_among_sql(
    tenant: Tenant, rules: dict, now: datetime, *, member_ids, subscriber_ids
) -> Compiled:
    """SELECT member_id, subscriber_id of the matching people among these members (as
    people: any of their numbers may match) and these numbers that have no member — for
    asking about a few people (a flow's segment filter) rather than listing everyone."""
    parts = []
    members = _members_part(tenant, rules, now)
    if members is not None and member_ids:
        parts.append(
            Frag(
                f"SELECT DISTINCT m.id, NULL::bigint {members.from_where.sql} AND m.id = ANY(%s)",
                (*members.from_where.params, list(member_ids)),
            )
        )
    subscribers = _subscribers_branch(tenant, rules, now)
    if subscribers is not None and subscriber_ids:
        parts.append(
            Frag(
                f"SELECT NULL::bigint, s.id {subscribers.from_where.sql} AND s.id = ANY(%s)",
                (*subscribers.from_where.params, list(subscriber_ids)),
            )
        )
    if not parts:
        return Compiled("SELECT NULL::bigint, NULL::bigint WHERE FALSE", ())
    return Compiled(
        " UNION ALL ".join(p.sql for p in parts), tuple(x for p in parts for x in p.params)
    )
