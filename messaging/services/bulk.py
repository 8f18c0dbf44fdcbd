"""Creating many texts at once (campaign fan-out): the same texts message_create would make,
without its per-text round trips.

- BulkComposer: a template parsed once, then rendered per recipient exactly as
  outbound.compose renders it (tags, tracked links, footer, smart encoding, segment count).
- recipient_values: the tag values of many numbers in ONE query (the member's name, balance
  and tier, the program's points name), plus programs.selectors.personalization (a few queries
  per call, whatever the number of members) when the template needs the tier ladder or
  expiring points.
- stage_messages + STAGED_INSERT: rows COPYed into a temporary table, then one
  INSERT … SELECT … ON CONFLICT (tenant, dedupe_key) DO NOTHING, so a key that exists already
  (a relaunch) is skipped, never sent twice. Tracked links are inserted only for the texts
  actually created.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime

from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging import encoding, rendering
from messaging.models import MessageKind, MessagingSettings
from messaging.services.outbound import CODE_LENGTH, check_template, new_code, short_url
from programs.models import Member
from programs.selectors import personalization
from programs.services.program import program_get

# --- rendering ------------------------------------------------------------------------------

_NON_GSM7 = re.compile(
    "[^" + re.escape("".join(sorted(encoding.GSM7_BASIC | encoding.GSM7_EXTENSION))) + "]"
)
_GSM7_EXTENDED = re.compile("[" + re.escape("".join(sorted(encoding.GSM7_EXTENSION))) + "]")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_CAPACITY = {encoding.GSM7: (160, 153), encoding.UCS2: (70, 67)}


def segment_info_fast(text: str) -> encoding.SegmentInfo:
    """encoding.segment_info, with the common case done by C-level regex scans: when every
    character is one unit (no GSM-7 extension character, no surrogate pair) greedy packing
    is plain division. Anything else goes to segment_info itself."""
    if _NON_GSM7.search(text) is None:
        if _GSM7_EXTENDED.search(text) is not None:
            return encoding.segment_info(text)
        kind = encoding.GSM7
    else:
        if _ASTRAL.search(text) is not None:
            return encoding.segment_info(text)
        kind = encoding.UCS2
    units = len(text)
    single, per_part = _CAPACITY[kind]
    segments = 1 if units <= single else -(-units // per_part)
    return encoding.SegmentInfo(encoding=kind, segments=segments, characters=units, units=units)


_OPEN, _CLOSE = "\x00", "\x01"  # rendering.render's placeholders for {{ and }}


class BulkComposer:
    """One template, parsed once, for many recipients: `compose(values, shorten)` returns what
    outbound.compose returns for the same arguments (tests compare the two)."""

    def __init__(
        self, template: str, *, kind: str, settings: MessagingSettings, brand: str
    ) -> None:
        check_template(template)
        self.kind = kind
        self.footer = settings.footer_text if settings.opt_out_footer else ""
        self.smart = settings.smart_encoding
        self.brand = brand
        text = template.replace("{{", _OPEN).replace("}}", _CLOSE)
        text = rendering.LINK.sub(lambda m: m.group("url"), text)
        # Literal text and (tag, fallback) slots, in order.
        self.parts: list[str | tuple[str, str]] = []
        position = 0
        for match in rendering.TAG.finditer(text):
            self.parts.append(text[position : match.start()])
            name = match.group("name")
            if name in rendering.TAGS:
                self.parts.append((name, match.group("fallback") or ""))
            else:
                self.parts.append(match.group())
            position = match.end()
        self.parts.append(text[position:])
        self.tags = {part[0] for part in self.parts if isinstance(part, tuple)}
        literal = "".join(p for p in self.parts if isinstance(p, str))
        self.may_have_url = "http" in literal

    def render(self, values: dict) -> str:
        """rendering.render(template, {"brand": brand, **values})."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                name, fallback = part
                value = self.brand if name == "brand" and "brand" not in values else None
                if value is None:
                    value = values.get(name)
                out.append(fallback if value is None or value == "" else str(value))
        text = "".join(out)
        if _OPEN in text or _CLOSE in text:
            text = text.replace(_OPEN, "{").replace(_CLOSE, "}")
        return text

    def compose(self, values: dict, shorten=None) -> tuple[str, encoding.SegmentInfo]:
        text = self.render(values)
        if self.kind == MessageKind.MARKETING:
            if shorten is not None and "http" in text:
                text = rendering.replace_urls(text, shorten)
            if self.footer:
                text = rendering.with_footer(text, self.footer)
        if self.smart:
            text = encoding.smart_encode(text)
        return text, segment_info_fast(text)


# --- personalization --------------------------------------------------------------------------

# Tags one row of the member (and its tier) answers; the others need the program's ladder or
# lots (programs.selectors.personalization).
ROW_TAGS = frozenset({"first_name", "last_name", "points_balance", "vip_tier", "points_name"})


def recipient_values(
    tenant: Tenant,
    rows: Sequence[tuple[int, int | None, str, str, int | None, str | None]],
    *,
    tags: Iterable[str],
    now: datetime,
) -> dict[int, dict]:
    """subscriber id → the tag values a text to that number may use, for rows of
    (subscriber id, member id, first name, last name, points balance, tier name) as the
    caller's own chunk query read them (one query per chunk; a number without a member has
    None there). Tags beyond ROW_TAGS come from programs.selectors.personalization, one call
    per chunk."""
    tags = set(tags)
    points_name = program_get(tenant).points_name if "points_name" in tags else ""
    values: dict[int, dict] = {}
    for subscriber_id, member_id, first, last, balance, tier in rows:
        if member_id is None:
            values[subscriber_id] = {}
            continue
        values[subscriber_id] = {
            "first_name": first,
            "last_name": last,
            "points_balance": f"{balance:,}",
            "points_name": points_name,
            "vip_tier": tier or "",
        }
    if tags - ROW_TAGS - {"brand", "reward_code"}:
        member_ids = [row[1] for row in rows if row[1] is not None]
        with tenant_scope(tenant):
            members = list(Member.objects.select_related("tier").filter(pk__in=member_ids))
        extra = personalization(tenant, members, now)
        for subscriber_id, member_id, *_ in rows:
            if member_id is not None:
                values[subscriber_id] = extra[member_id]
    return values


# --- writing --------------------------------------------------------------------------------

STAGE_TABLES = """
CREATE TEMPORARY TABLE IF NOT EXISTS bulk_outbound_rows (
    subscriber_id bigint NOT NULL, to_number varchar(16) NOT NULL, body text NOT NULL,
    encoding varchar(5) NOT NULL, segments smallint NOT NULL, send_after timestamptz NOT NULL
) ON COMMIT DELETE ROWS;
CREATE TEMPORARY TABLE IF NOT EXISTS bulk_shortlink_rows (
    subscriber_id bigint NOT NULL, code varchar(12) NOT NULL, target varchar(2000) NOT NULL
) ON COMMIT DELETE ROWS;
TRUNCATE bulk_outbound_rows, bulk_shortlink_rows;
"""

# The staged texts as OutboundMessage rows (queued; the dedupe key is the prefix and the
# subscriber id), and their tracked links for the texts actually inserted. A CTE: the caller
# adds its own parts after it (reading `created`) and its final SELECT.
STAGED_INSERT = """
created AS (
    INSERT INTO messaging_outboundmessage (
        tenant_id, subscriber_id, sender_id, "to", kind, source, source_ref, dedupe_key, body,
        encoding, segments, price_estimate, status, status_reason, error_code, attempts,
        send_after, expires_at, created_at, updated_at)
    SELECT %(tenant)s, b.subscriber_id, %(sender)s, b.to_number, %(kind)s, %(source)s,
           %(source_ref)s, %(dedupe_prefix)s || b.subscriber_id, b.body, b.encoding,
           b.segments, b.segments * %(price_per_segment)s::numeric, 'queued', '', '', 0,
           b.send_after, b.send_after + %(expires_after)s::interval, %(now)s, %(now)s
    FROM bulk_outbound_rows b
    ON CONFLICT (tenant_id, dedupe_key) DO NOTHING
    RETURNING id, subscriber_id, dedupe_key
),
created_links AS (
    INSERT INTO messaging_shortlink (
        tenant_id, code, target, subscriber_id, message_dedupe_key, created_at, clicks)
    SELECT %(tenant)s, l.code, l.target, l.subscriber_id, c.dedupe_key, %(now)s, 0
    FROM bulk_shortlink_rows l JOIN created c ON c.subscriber_id = l.subscriber_id
    RETURNING 1
)
"""


def stage_messages(
    cursor,
    messages: list[tuple[int, str, str, str, int, datetime]],
    links: list[tuple[int, str, str]],
) -> None:
    """COPY (subscriber id, to, body, encoding, segments, send_after) rows and (subscriber id,
    code, target) links into this transaction's staging tables (emptied first)."""
    raw = getattr(cursor, "cursor", cursor)  # Django's wrapper → psycopg2's cursor
    raw.execute(STAGE_TABLES)
    for table, rows in (("bulk_outbound_rows", messages), ("bulk_shortlink_rows", links)):
        if not rows:
            continue
        buffer = io.StringIO()
        csv.writer(buffer).writerows(rows)
        buffer.seek(0)
        raw.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv)", buffer)


class LinkShortener:
    """shorten() for the texts of a chunk: each URL of each text gets a fresh code (set
    `subscriber_id` before composing a recipient's text); the links are collected for
    staging. Codes are drawn like outbound.new_code's (uniform over letters and digits, from
    the secrets module) but many at a time: token_urlsafe's 64 characters less "-" and "_"
    leave the 62 uniform."""

    def __init__(self) -> None:
        self.links: list[tuple[int, str, str]] = []
        self.subscriber_id = 0
        self._pool = ""
        # short_url(code) is this prefix and the code (one reverse() instead of one a link).
        sample = new_code()
        self.prefix = short_url(sample)[: -len(sample)]

    def new_code(self) -> str:
        if len(self._pool) < CODE_LENGTH:
            raw = secrets.token_urlsafe(CODE_LENGTH * 600)
            self._pool = raw.replace("-", "").replace("_", "")
        code, self._pool = self._pool[:CODE_LENGTH], self._pool[CODE_LENGTH:]
        return code

    def __call__(self, url: str) -> str:
        code = self.new_code()
        self.links.append((self.subscriber_id, code, url))
        return self.prefix + code
