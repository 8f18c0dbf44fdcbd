"""Launching a campaign: freeze the audience, create the texts in chunks, and for an A/B test
send the winner to the remainder after the wait.

Exactly once per recipient, however often a launch runs or wherever it stops:
- The audience is frozen by ONE INSERT … SELECT … ON CONFLICT DO NOTHING into
  CampaignRecipient (unique per campaign and number), in the same transaction that records it
  as frozen. Groups and A/B variants come from a hash of (subscriber id, campaign id) —
  PostgreSQL's hashint8extended, the seeded 64-bit hash behind hash partitioning, which must
  stay the same across versions for partitions to survive an upgrade — so a relaunch would
  assign the same: the low 32 bits pick the group, the high 32 the variant.
- Each chunk is one transaction holding the campaign row's lock: it reads the recipients after
  the phase's cursor (the campaign's `test_cursor` / `remainder_cursor`, in subscriber order),
  renders their texts, writes them (COPY into a staging table, then INSERT … SELECT … ON
  CONFLICT (tenant, dedupe_key) DO NOTHING with the key campaign:<id>:<subscriber>) and moves
  the cursor past them — all or nothing. A worker that dies mid-chunk
  leaves the chunk undone and the next launch does it; two launches at once take turns chunk
  by chunk; a cancel waits for the chunk under way and every later chunk sees it.
- One dispatcher wake-up per chunk (dispatch_soon), none per text.
"""

from __future__ import annotations

import logging
import time as monotonic
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection, transaction

from automations.metrics import WINNER_METRICS, dedupe_prefix, winner_of
from automations.models import (
    Campaign,
    CampaignStatus,
    CampaignVariant,
    RecipientGroup,
    SendMode,
)
from automations.selectors import audience_sql
from loyaltysms.models import Tenant
from loyaltysms.tenancy.context import tenant_scope
from messaging.encoding import MAX_BODY_CHARACTERS
from messaging.models import MessageKind, MessageStatus
from messaging.services.bulk import (
    STAGED_INSERT,
    BulkComposer,
    LinkShortener,
    recipient_values,
    stage_messages,
)
from messaging.services.outbound import dispatch_soon
from messaging.services.setup import brand_name, messaging_settings_get, sender_default
from segments.selectors import WORK_MEM

logger = logging.getLogger(__name__)

CHUNK = 5000
HASH_SPACE = 2**32
# Marketing texts that count as "got one" for smart sending: as the dispatcher's caps count.
RECEIVED = (
    MessageStatus.SENDING,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.UNDELIVERED,
    MessageStatus.UNKNOWN,
)


# --- 1. freezing the audience ---------------------------------------------------------------

FREEZE = """
WITH audience AS ({audience}),
pool AS (
    SELECT a.id AS subscriber_id, a.h & 4294967295 AS g, (a.h >> 32) & 4294967295 AS v,
           {recent} AS recent
    FROM (SELECT id, hashint8extended(id, %s) AS h FROM audience) a
),
frozen AS (
    INSERT INTO automations_campaignrecipient
        (tenant_id, campaign_id, subscriber_id, "group", variant_id, skip_reason)
    SELECT %s, %s, p.subscriber_id, x.grp,
           CASE WHEN x.grp = 'test' THEN (%s::bigint[])[(1 + p.v %% %s)::int] END,
           CASE WHEN p.recent THEN 'smart sending' ELSE '' END
    FROM pool p
    CROSS JOIN LATERAL (SELECT CASE WHEN p.recent THEN 'skipped'
                                    WHEN p.g < %s THEN 'holdout'
                                    WHEN p.g < %s THEN 'test'
                                    ELSE 'remainder' END AS grp) x
    ON CONFLICT (tenant_id, campaign_id, subscriber_id) DO NOTHING
    RETURNING "group"
)
SELECT "group", count(*) FROM frozen GROUP BY "group"
"""
RECENT = """EXISTS (
    SELECT 1 FROM messaging_outboundmessage o
    WHERE o.tenant_id = %s AND o.subscriber_id = a.id AND o.kind = 'marketing'
      AND o.sending_at IS NOT NULL AND o.sending_at > %s AND o.status = ANY(%s))"""


def _freeze(campaign: Campaign, variant_ids: list[int], now: datetime) -> dict[str, int]:
    audience, params = audience_sql(
        campaign.tenant, campaign.segment_ids, campaign.exclude_segment_ids, now
    )
    if campaign.smart_sending_hours:
        recent = RECENT
        recent_params = [
            campaign.tenant_id,
            now - timedelta(hours=campaign.smart_sending_hours),
            [str(s) for s in RECEIVED],
        ]
    else:
        recent, recent_params = "FALSE", []
    holdout_cut = HASH_SPACE * campaign.holdout_percent // 100
    test_cut = holdout_cut
    if campaign.ab_test:
        test_cut += (HASH_SPACE - holdout_cut) * campaign.test_percent // 100
    sql = FREEZE.format(audience=audience, recent=recent)
    params = [
        *params,
        *recent_params,
        campaign.pk,
        campaign.tenant_id,
        campaign.pk,
        variant_ids or [0],
        max(1, len(variant_ids)),
        holdout_cut,
        test_cut,
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        cursor.execute(sql, params)
        return dict(cursor.fetchall())


# --- 2. creating the texts ----------------------------------------------------------------

CHUNK_ROWS = """
SELECT r.id, r.subscriber_id, r.variant_id, s.phone, s.timezone, {candidates},
       m.id, m.first_name, m.last_name, m.points_balance, t.name
FROM automations_campaignrecipient r
JOIN messaging_subscriber s ON s.id = r.subscriber_id AND s.tenant_id = r.tenant_id
LEFT JOIN programs_member m ON m.id = s.member_id AND m.tenant_id = r.tenant_id
LEFT JOIN programs_tier t ON t.id = m.tier_id
WHERE r.tenant_id = %s AND r.campaign_id = %s AND r.subscriber_id > %s AND r."group" = %s
ORDER BY r.subscriber_id
LIMIT %s
"""
INSERT_TEXTS = """
WITH {staged}
SELECT (SELECT count(*) FROM created), (SELECT count(*) FROM created_links)
"""
SKIP = """
UPDATE automations_campaignrecipient SET "group" = 'skipped', skip_reason = %s
WHERE tenant_id = %s AND id = ANY(%s)
"""


class _SendTimes:
    """When each recipient's text may go: the campaign's moment, or (local mode) the local
    date and time in the recipient's zone — the latest of its candidate zones when the number
    could be in several, so nobody gets it early — and never before `now`."""

    def __init__(self, campaign: Campaign, tenant: Tenant, now: datetime) -> None:
        self.now = now
        self.mode = campaign.send_mode
        self.fixed = max(now, campaign.send_at) if campaign.send_mode == SendMode.AT else now
        self.local = (
            datetime.combine(campaign.local_date, campaign.local_time)
            if campaign.send_mode == SendMode.LOCAL
            else None
        )
        self.brand_zone = tenant.timezone
        self.cache: dict[tuple, datetime] = {}

    def for_zones(self, zone: str, candidates: list[str] | None) -> datetime:
        if self.local is None:
            return self.fixed
        key = (zone,) if zone else tuple(candidates or ()) or (self.brand_zone,)
        found = self.cache.get(key)
        if found is None:
            found = max(self.local.replace(tzinfo=ZoneInfo(z)).astimezone(UTC) for z in key)
            found = max(found, self.now)
            self.cache[key] = found
        return found


class _Writer:
    """What every chunk of one phase shares: composers, constants, the send times."""

    def __init__(self, campaign: Campaign, group: str, now: datetime) -> None:
        tenant = campaign.tenant
        settings = messaging_settings_get(tenant)
        brand = brand_name(tenant, settings)
        self.campaign, self.group, self.now = campaign, group, now
        self.tenant = tenant

        def composer(body: str) -> BulkComposer:
            return BulkComposer(body, kind=MessageKind.MARKETING, settings=settings, brand=brand)

        self.winner_id = None
        if campaign.ab_test:
            with tenant_scope(tenant):
                variants = {v.pk: v for v in CampaignVariant.objects.filter(campaign=campaign)}
            self.composers = {pk: composer(v.body) for pk, v in variants.items()}
            if group == RecipientGroup.REMAINDER:
                self.winner_id = campaign.winner_id
                self.composers[None] = self.composers[campaign.winner_id]
        else:
            self.composers = {None: composer(campaign.body)}
        self.tags = set().union(*(c.tags for c in self.composers.values()))
        self.times = _SendTimes(campaign, tenant, now)
        self.params = {
            "tenant": tenant.pk,
            "campaign": campaign.pk,
            "sender": sender_default(tenant).pk,
            "kind": MessageKind.MARKETING.value,
            "source": "campaign",
            "source_ref": str(campaign.pk),
            "dedupe_prefix": dedupe_prefix(campaign),
            "price_per_segment": settings.price_per_segment,
            "expires_after": (
                timedelta(hours=campaign.expires_hours) if campaign.expires_hours else None
            ),
            "now": now,
        }
        self.rows_sql = CHUNK_ROWS.format(
            candidates="s.timezone_candidates"
            if campaign.send_mode == SendMode.LOCAL
            else "NULL::varchar[]"
        )
        self.insert_sql = INSERT_TEXTS.format(staged=STAGED_INSERT)

    def chunk(self, cursor, after: int, size: int) -> tuple[int, int, int, int]:
        """One chunk, after subscriber id `after`: (last subscriber id, rows read, texts
        created, recipients skipped)."""
        cursor.execute(self.rows_sql, [self.tenant.pk, self.campaign.pk, after, self.group, size])
        rows = cursor.fetchall()
        if not rows:
            return after, 0, 0, 0
        values = recipient_values(
            self.tenant,
            [(row[1], row[6], row[7], row[8], row[9], row[10]) for row in rows],
            tags=self.tags,
            now=self.now,
        )
        shortener = LinkShortener()
        messages, too_long = [], []
        composers, times = self.composers, self.times
        for recipient_id, subscriber_id, variant_id, phone, zone, candidates, *_ in rows:
            shortener.subscriber_id = subscriber_id
            links_before = len(shortener.links)
            text, info = composers[variant_id].compose(values[subscriber_id], shortener)
            if info.characters > MAX_BODY_CHARACTERS:
                del shortener.links[links_before:]
                too_long.append(recipient_id)
                continue
            messages.append(
                (
                    subscriber_id,
                    phone,
                    text,
                    info.encoding,
                    info.segments,
                    times.for_zones(zone, candidates),
                )
            )
        stage_messages(cursor, messages, shortener.links)
        cursor.execute(self.insert_sql, self.params)
        created, _ = cursor.fetchone()
        if created < len(messages):
            # Keys that exist already: the texts are there (made by a launch whose progress
            # was lost?); counted as this campaign's, never made twice.
            logger.warning(
                "campaign %s: %d texts existed already", self.campaign.pk, len(messages) - created
            )
        if too_long:
            cursor.execute(
                SKIP,
                [f"longer than {MAX_BODY_CHARACTERS} characters", self.tenant.pk, too_long],
            )
        return rows[-1][1], len(rows), len(messages), len(too_long)


# A chunk's tracked links draw 7-character codes at random (62^7 of them): a million links
# meet an existing code about once in seven campaigns. The chunk is then drawn again.
CODE_DRAWS = 3


def _chunk(writer: _Writer, cursor, after: int, size: int) -> tuple[int, int, int, int]:
    """writer.chunk in a savepoint, drawn again when a link's code is taken already."""
    for _ in range(CODE_DRAWS - 1):
        try:
            with transaction.atomic():
                return writer.chunk(cursor, after, size)
        except IntegrityError as error:
            if "messaging_shortlink_code" not in str(error):
                raise
            logger.info("campaign %s: a link code was taken; drawn again", writer.campaign.pk)
    with transaction.atomic():
        return writer.chunk(cursor, after, size)


def _lock(campaign: Campaign) -> Campaign:
    with tenant_scope(campaign.tenant):
        return Campaign.objects.select_for_update(no_key=True).get(pk=campaign.pk)


CURSORS = {RecipientGroup.TEST: "test_cursor", RecipientGroup.REMAINDER: "remainder_cursor"}


def _fan_out(
    campaign: Campaign,
    group: str,
    now: datetime,
    *,
    chunk: int,
    deadline: float | None,
    after_chunk: Callable[[int], None] | None,
) -> bool:
    """Create the texts of one group, chunk by chunk, from where the last chunk committed.
    False: stopped (canceled, or out of time) before the end."""
    writer = _Writer(campaign, group, now)
    cursor_field = CURSORS[group]
    done = 0
    started = monotonic.monotonic()
    while True:
        if deadline is not None and monotonic.monotonic() > deadline:
            return False
        with transaction.atomic(), connection.cursor() as cursor:
            locked = _lock(campaign)
            if locked.status != CampaignStatus.SENDING:
                return False
            after = getattr(locked, cursor_field)
            last, read, created, skipped = _chunk(writer, cursor, after, chunk)
            if not read:
                return True
            with tenant_scope(campaign.tenant):
                Campaign.objects.filter(pk=campaign.pk).update(
                    **{cursor_field: last},
                    created_count=locked.created_count + created,
                    skipped_count=locked.skipped_count + skipped,
                    # On the caller's clock, advanced by the real time spent (a scan takes a
                    # launch that stops advancing for stalled).
                    progress_at=now + timedelta(seconds=monotonic.monotonic() - started),
                    updated_at=now,
                )
            if created:
                dispatch_soon()
            done += 1
            if after_chunk is not None:
                after_chunk(done)


# --- the launch and the A/B advance ---------------------------------------------------------


def _variant_ids(campaign: Campaign) -> list[int]:
    with tenant_scope(campaign.tenant):
        return list(
            CampaignVariant.objects.filter(campaign=campaign)
            .order_by("id")
            .values_list("id", flat=True)
        )


def _start(campaign: Campaign, now: datetime) -> Campaign | None:
    """Scheduled → sending with the audience frozen (once). None: nothing to launch."""
    with transaction.atomic():
        locked = _lock(campaign)
        if locked.status == CampaignStatus.SCHEDULED:
            locked.status = CampaignStatus.SENDING
            locked.launched_at = now
        if locked.status != CampaignStatus.SENDING:
            return None
        if locked.frozen_at is None:
            counts = _freeze(locked, _variant_ids(locked), now)
            test = counts.get(RecipientGroup.TEST, 0)
            locked.test_count = test
            locked.remainder_count = counts.get(RecipientGroup.REMAINDER, 0)
            locked.holdout_count = counts.get(RecipientGroup.HOLDOUT, 0)
            locked.skipped_count = counts.get(RecipientGroup.SKIPPED, 0)
            locked.audience_count = sum(counts.values())
            locked.frozen_at = now
        locked.progress_at = locked.updated_at = now
        locked.save(
            update_fields=[
                "status",
                "launched_at",
                "test_count",
                "remainder_count",
                "holdout_count",
                "skipped_count",
                "audience_count",
                "frozen_at",
                "progress_at",
                "updated_at",
            ]
        )
        return locked


def campaign_launch(
    *,
    campaign: Campaign,
    now: datetime,
    chunk: int = CHUNK,
    max_seconds: float | None = None,
    after_chunk: Callable[[int], None] | None = None,
) -> bool:
    """Launch (or carry on launching) a scheduled campaign: freeze its audience, then create
    the texts of the test group (A/B) or of everyone texted. True when this phase is done;
    False when it stopped early (canceled, or `max_seconds` ran out: run it again).
    `after_chunk(n)` is called inside each chunk's transaction once its rows are written."""
    deadline = None if max_seconds is None else monotonic.monotonic() + max_seconds
    started = _start(campaign, now)
    if started is None:
        return True
    if started.finished_at is not None:
        return True
    if started.ab_test:
        if started.test_created_at is None:
            done = _fan_out(
                started, RecipientGroup.TEST, now,
                chunk=chunk, deadline=deadline, after_chunk=after_chunk,
            )  # fmt: skip
            if not done:
                return False
            _test_created(started, now)
        if started.winner_id is None:
            return True  # the remainder waits for the winner (campaign_ab_advance)
    done = _fan_out(
        started, RecipientGroup.REMAINDER, now,
        chunk=chunk, deadline=deadline, after_chunk=after_chunk,
    )  # fmt: skip
    if done:
        _finished(started, now)
    return done


TEST_MOMENT = """
SELECT max(o.send_after) FROM automations_campaignrecipient r
JOIN messaging_outboundmessage o
  ON o.tenant_id = r.tenant_id AND o.dedupe_key = %s || r.subscriber_id
WHERE r.tenant_id = %s AND r.campaign_id = %s AND r."group" = 'test'
"""


def _test_created(campaign: Campaign, now: datetime) -> None:
    """The test group's texts exist: the wait runs from the latest moment one may go."""
    with transaction.atomic():
        locked = _lock(campaign)
        if locked.test_created_at is not None:
            return
        with connection.cursor() as cursor:
            cursor.execute(TEST_MOMENT, [dedupe_prefix(locked), locked.tenant_id, locked.pk])
            latest = cursor.fetchone()[0] or now
        locked.test_created_at = now
        locked.winner_due_at = max(latest, now) + timedelta(minutes=locked.wait_minutes)
        locked.updated_at = now
        locked.save(update_fields=["test_created_at", "winner_due_at", "updated_at"])
        campaign.test_created_at, campaign.winner_due_at = now, locked.winner_due_at


def _finished(campaign: Campaign, now: datetime) -> None:
    with transaction.atomic():
        locked = _lock(campaign)
        if locked.status == CampaignStatus.SENDING and locked.finished_at is None:
            locked.status = CampaignStatus.SENT
            locked.finished_at = now
            locked.updated_at = now
            locked.save(update_fields=["status", "finished_at", "updated_at"])


def campaign_winner_choose(*, campaign: Campaign, now: datetime) -> int | None:
    """Once the wait is over: score the variants by the campaign's metric up to `now` and
    record the winner (ties → the lowest variant id). Decided once: a second call, even a
    concurrent one (it waits for the campaign row's lock), returns the same winner. None: not
    yet due."""
    with transaction.atomic():
        locked = _lock(campaign)
        if locked.winner_id is not None:
            return locked.winner_id
        if (
            locked.status != CampaignStatus.SENDING
            or locked.winner_due_at is None
            or locked.winner_due_at > now
        ):
            return None
        scores = WINNER_METRICS[locked.winner_metric](locked, now)
        locked.winner_id = winner_of(scores, _variant_ids(locked))
        locked.winner_scores = {str(k): v for k, v in scores.items()}
        locked.winner_chosen_at = now
        locked.updated_at = now
        locked.save(update_fields=["winner", "winner_scores", "winner_chosen_at", "updated_at"])
        return locked.winner_id


def campaign_advance(
    *,
    campaign: Campaign,
    now: datetime,
    chunk: int = CHUNK,
    max_seconds: float | None = None,
    after_chunk: Callable[[int], None] | None = None,
) -> bool:
    """Whatever is due for this campaign at `now`: its launch, the rest of an interrupted
    launch, or (A/B) the winner and the remainder's texts. Safe to run any number of times,
    concurrently too. True when nothing more is due now."""
    campaign.refresh_from_db()
    if campaign.status == CampaignStatus.SCHEDULED and launch_moment(campaign) > now:
        return True
    if campaign.ab_test and campaign.test_created_at is not None:
        if campaign_winner_choose(campaign=campaign, now=now) is None:
            return True
        campaign.refresh_from_db()
    return campaign_launch(
        campaign=campaign, now=now, chunk=chunk, max_seconds=max_seconds, after_chunk=after_chunk
    )


# Local mode starts where the local time comes first (UTC+14), so every zone gets its text
# at its own local time.
EARLIEST_OFFSET = timedelta(hours=14)


def launch_moment(campaign: Campaign) -> datetime:
    """When a scheduled campaign's audience is frozen and its texts created."""
    if campaign.send_mode == SendMode.AT:
        return campaign.send_at
    if campaign.send_mode == SendMode.LOCAL:
        local = datetime.combine(campaign.local_date, campaign.local_time, tzinfo=UTC)
        return local - EARLIEST_OFFSET
    return campaign.created_at


# Campaigns a scan should look at: scheduled ones whose moment may have come, launches left
# unfinished, A/B tests whose wait is over.
STALLED_AFTER = timedelta(minutes=5)


def campaigns_due(now: datetime) -> list[tuple[int, int]]:
    """(tenant id, campaign id) of every campaign with something due at `now`."""
    # WARNING: every tenant's campaigns; each is then advanced in its own tenant's task.
    active = Campaign.objects.unscoped().filter(
        status__in=[CampaignStatus.SCHEDULED, CampaignStatus.SENDING]
    )
    due = []
    for campaign in active.only(
        "id",
        "tenant_id",
        "status",
        "send_mode",
        "send_at",
        "local_date",
        "local_time",
        "created_at",
        "ab_test",
        "test_created_at",
        "winner_id",
        "winner_due_at",
        "progress_at",
    ):
        if campaign.status == CampaignStatus.SCHEDULED:
            if launch_moment(campaign) <= now:
                due.append((campaign.tenant_id, campaign.pk))
            continue
        waiting = campaign.ab_test and campaign.test_created_at is not None
        if waiting and campaign.winner_id is None:
            if campaign.winner_due_at is not None and campaign.winner_due_at <= now:
                due.append((campaign.tenant_id, campaign.pk))
        elif campaign.progress_at is None or campaign.progress_at < now - STALLED_AFTER:
            due.append((campaign.tenant_id, campaign.pk))  # a launch that stopped midway
    return due
