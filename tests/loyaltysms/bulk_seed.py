"""A large brand in a few seconds, for tests that must see pages with real volumes of data.

`seed_large(tenant, owner=…)` adds, in SQL (INSERT … SELECT generate_series, seeded random()),
everything a busy brand has: thousands of members with orders, lots, ledger entries,
redemptions and tier changes; a phone number for each (and numbers that aren't members), with
their consent evidence and their replies in the inbox; the brand's first campaign sent to all
of them (recipients, texts with receipts, clicked links, attributed orders); a run of the
first flow for each member with its log and texts; more campaigns, segments, flows, rewards,
multiplier events, teammates, invitations, API keys and audit events than a page shows.

The objects the detail pages open (the brand's first member, subscriber, campaign, segment and
flow, made before by the services) get long histories of their own: a ledger of hundreds of
entries, a conversation of hundreds of texts, a campaign of thousands of recipients, a flow of
thousands of runs, runs in every flow.

Every row is the brand's (tenant_id), with the columns its services would write, so the pages
render them as they render real ones. Nothing here runs a worker: the rows are as a worker
would have left them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from automations.flows.prebuilt import CATALOGUE
from automations.models import Campaign, Flow
from automations.services.flow_install import flow_install
from loyaltysms.models import Tenant, User
from loyaltysms.problems import ProblemError
from loyaltysms.tenancy.context import tenant_scope
from messaging.models import Subscriber
from messaging.services.setup import sender_default
from programs.models import Member
from programs.services.program import (
    multiplier_event_create,
    reward_create,
    settings_changed,
    tier_create,
)
from segments.models import Segment
from segments.services import segment_create

FIRST_NAMES = ["Ana", "Ben", "Chloe", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo"]
LAST_NAMES = ["Lee", "Garcia", "Smith", "Nguyen", "Okafor", "Rossi", "Kim"]


@dataclass(frozen=True)
class Targets:
    """The rows the detail pages open: the brand's first of each."""

    member: int
    subscriber: int
    campaign: int
    segment: int
    flow: int


def targets(tenant: Tenant) -> Targets:
    with tenant_scope(tenant):
        return Targets(
            member=Member.objects.order_by("id").values_list("id", flat=True)[0],
            subscriber=Subscriber.objects.order_by("id").values_list("id", flat=True)[0],
            campaign=Campaign.objects.order_by("id").values_list("id", flat=True)[0],
            segment=Segment.objects.order_by("id").values_list("id", flat=True)[0],
            flow=Flow.objects.order_by("id").values_list("id", flat=True)[0],
        )


# --- SQL ------------------------------------------------------------------------------------
# Parameters: tenant, now, members, loose (numbers that aren't members), owner, sender_phone,
# sender, campaign, flow, segment, first_member, first_subscriber, ledger, thread, reward.
# Bulk members' external ids start "bulk", their orders "bulk-"; the first member's own
# history "long-".

MEMBERS = """
SELECT setseed(0.42);

INSERT INTO programs_member (tenant_id, external_id, phone, email, first_name, last_name,
    birthday_month, birthday_day, birthday_year, timezone, tags, enrolled_at, points_balance,
    points_pending, lifetime_points, lifetime_spend, orders_count, last_order_at,
    last_activity_at, tier_review_at, tier_id, sms_status, created_at, updated_at)
SELECT %(tenant)s, 'bulk' || n, '+1646555' || lpad(n::text, 4, '0'),
       'member' || n || '@example.com',
       (%(first_names)s::text[])[1 + n %% 10], (%(last_names)s::text[])[1 + n %% 7],
       CASE WHEN n %% 4 = 0 THEN NULL ELSE 1 + n %% 12 END,
       CASE WHEN n %% 4 = 0 THEN NULL ELSE 1 + n %% 28 END,
       CASE WHEN n %% 8 = 1 THEN 1970 + n %% 40 END,
       CASE WHEN n %% 10 = 0 THEN 'America/Los_Angeles' ELSE '' END,
       CASE WHEN n %% 9 = 0 THEN ARRAY['vip']::varchar[]
            WHEN n %% 5 = 0 THEN ARRAY['coffee', 'tea']::varchar[]
            ELSE '{}'::varchar[] END,
       %(now)s - interval '400 days' + n * interval '2 hours', 0, 0, 0, 0, 0, NULL,
       %(now)s - interval '400 days' + n * interval '2 hours', NULL, NULL, 'none',
       %(now)s - interval '400 days' + n * interval '2 hours', %(now)s
FROM generate_series(1, %(members)s) AS n;

-- Two orders each, the points they earned (one lot each, expiring a year on), and a reward
-- redeemed by one member in four (from the first lot: the first to expire).
INSERT INTO programs_order (tenant_id, order_id, member_id, subtotal, currency, placed_at,
    points_awarded, refunded_amount, points_reversed, response, created_at)
SELECT m.tenant_id, 'bulk-' || m.id || '-' || k, m.id, s.subtotal, 'USD', s.placed_at,
       floor(s.subtotal)::int, 0, 0, NULL, s.placed_at
FROM programs_member m
CROSS JOIN generate_series(1, 2) AS k
CROSS JOIN LATERAL (
    SELECT round((60 + random() * 540)::numeric, 2) AS subtotal,
           m.enrolled_at + k * (%(now)s - m.enrolled_at) / 3 AS placed_at
) s
WHERE m.tenant_id = %(tenant)s AND m.external_id LIKE 'bulk%%'
ORDER BY s.placed_at;

INSERT INTO programs_pointslot (tenant_id, member_id, points, remaining, expired, earned_at,
    available_at, matured, expires_at, order_id, source, reason)
SELECT o.tenant_id, o.member_id, o.points_awarded,
       o.points_awarded - CASE WHEN o.order_id LIKE '%%-1' AND o.member_id %% 4 = 0
                               THEN 50 ELSE 0 END,
       0, o.placed_at, o.placed_at, TRUE, o.placed_at + interval '365 days', o.id, 'order',
       'Order ' || o.order_id
FROM programs_order o
WHERE o.tenant_id = %(tenant)s AND o.order_id LIKE 'bulk-%%';

INSERT INTO programs_pointsentry (tenant_id, member_id, kind, points, balance_after, reason,
    source, source_ref, actor_id, bonus_key, expires_at, created_at)
SELECT o.tenant_id, o.member_id, 'earn', o.points_awarded,
       sum(o.points_awarded) OVER (PARTITION BY o.member_id ORDER BY o.placed_at, o.id),
       'Order ' || o.order_id, 'order', o.order_id, NULL, NULL,
       o.placed_at + interval '365 days', o.placed_at
FROM programs_order o
WHERE o.tenant_id = %(tenant)s AND o.order_id LIKE 'bulk-%%'
ORDER BY o.placed_at, o.id;

INSERT INTO programs_pointsentry (tenant_id, member_id, kind, points, balance_after, reason,
    source, source_ref, actor_id, bonus_key, expires_at, created_at)
SELECT m.tenant_id, m.id, 'redeem', -50, sum(o.points_awarded) - 50, 'Redeemed a reward',
       'redemption', 'B' || m.id, NULL, NULL, NULL, max(o.placed_at) + interval '1 day'
FROM programs_member m JOIN programs_order o ON o.member_id = m.id AND o.tenant_id = m.tenant_id
WHERE m.tenant_id = %(tenant)s AND m.external_id LIKE 'bulk%%' AND m.id %% 4 = 0
GROUP BY m.tenant_id, m.id;

INSERT INTO programs_lotdebit (tenant_id, entry_id, lot_id, points)
SELECT e.tenant_id, e.id, l.id, 50
FROM programs_pointsentry e
JOIN programs_order o ON o.tenant_id = e.tenant_id AND o.order_id = 'bulk-' || e.member_id || '-1'
JOIN programs_pointslot l ON l.tenant_id = e.tenant_id AND l.order_id = o.id
WHERE e.tenant_id = %(tenant)s AND e.kind = 'redeem' AND e.source_ref LIKE 'B%%';

INSERT INTO programs_redemption (tenant_id, member_id, reward_id, code, points_spent, status,
    entry_id, gift_key, created_at, used_at, cancelled_at)
SELECT e.tenant_id, e.member_id, %(reward)s, e.source_ref, 50,
       CASE WHEN e.member_id %% 3 = 0 THEN 'used' ELSE 'issued' END, e.id, NULL, e.created_at,
       CASE WHEN e.member_id %% 3 = 0 THEN e.created_at + interval '2 days' END, NULL
FROM programs_pointsentry e
WHERE e.tenant_id = %(tenant)s AND e.kind = 'redeem' AND e.source_ref LIKE 'B%%';

UPDATE programs_member m
SET points_balance = t.earned - t.spent, lifetime_points = t.earned,
    lifetime_spend = t.spend, orders_count = t.orders, last_order_at = t.last_order,
    last_activity_at = t.last_order,
    tier_id = (SELECT id FROM programs_tier WHERE tenant_id = m.tenant_id
               AND threshold <= t.earned ORDER BY threshold DESC LIMIT 1)
FROM (
    SELECT o.member_id, sum(o.points_awarded) AS earned, sum(o.subtotal) AS spend,
           count(*) AS orders, max(o.placed_at) AS last_order,
           CASE WHEN o.member_id %% 4 = 0 THEN 50 ELSE 0 END AS spent
    FROM programs_order o WHERE o.tenant_id = %(tenant)s AND o.order_id LIKE 'bulk-%%'
    GROUP BY o.member_id
) t
WHERE m.id = t.member_id AND m.tenant_id = %(tenant)s;

INSERT INTO programs_tierchange (tenant_id, member_id, from_tier_id, to_tier_id, direction,
    qualifying_value, reason, created_at)
SELECT m.tenant_id, m.id, NULL, m.tier_id, 'up', m.lifetime_points, 'Qualified', m.last_order_at
FROM programs_member m
WHERE m.tenant_id = %(tenant)s AND m.external_id LIKE 'bulk%%' AND m.tier_id IS NOT NULL;

INSERT INTO programs_loyaltyevent (tenant_id, kind, member_id, payload, created_at,
    processed_at)
SELECT m.tenant_id, 'member_enrolled', m.id, jsonb_build_object('external_id', m.external_id),
       m.enrolled_at, m.enrolled_at
FROM programs_member m WHERE m.tenant_id = %(tenant)s AND m.external_id LIKE 'bulk%%';
"""

# The first member's long history: orders, manual adjustments by the owner, bonuses,
# redemptions, tier moves up and down; the balance never below zero.
LONG_LEDGER = """
CREATE TEMP TABLE qc_ledger AS
SELECT k,
       CASE k %% 6 WHEN 3 THEN 'adjust' WHEN 4 THEN 'redeem' WHEN 5 THEN 'bonus'
            ELSE 'earn' END AS what,
       CASE k %% 6 WHEN 3 THEN CASE WHEN k %% 4 = 1 THEN -5 ELSE 10 END
                   WHEN 4 THEN -50 WHEN 5 THEN 25 ELSE 60 + (k * 37) %% 240 END AS points,
       %(now)s - interval '300 days' + k * interval '11 hours' AS at
FROM generate_series(1, %(ledger)s) AS k;

INSERT INTO programs_order (tenant_id, order_id, member_id, subtotal, currency, placed_at,
    points_awarded, refunded_amount, points_reversed, response, created_at)
SELECT %(tenant)s, 'long-' || k, %(first_member)s, points, 'USD', at, points, 0, 0, NULL, at
FROM qc_ledger WHERE what = 'earn' ORDER BY k;

INSERT INTO programs_pointslot (tenant_id, member_id, points, remaining, expired, earned_at,
    available_at, matured, expires_at, order_id, source, reason)
SELECT o.tenant_id, o.member_id, o.points_awarded, o.points_awarded / 2, 0, o.placed_at,
       o.placed_at, TRUE, o.placed_at + interval '365 days', o.id, 'order',
       'Order ' || o.order_id
FROM programs_order o WHERE o.tenant_id = %(tenant)s AND o.order_id LIKE 'long-%%';

INSERT INTO programs_pointsentry (tenant_id, member_id, kind, points, balance_after, reason,
    source, source_ref, actor_id, bonus_key, expires_at, created_at)
SELECT %(tenant)s, %(first_member)s,
       CASE what WHEN 'earn' THEN 'earn' WHEN 'bonus' THEN 'earn' WHEN 'redeem' THEN 'redeem'
            ELSE 'adjust' END,
       points, m.points_balance + sum(points) OVER (ORDER BY k),
       CASE what WHEN 'earn' THEN 'Order long-' || k WHEN 'bonus' THEN 'Birthday bonus'
            WHEN 'redeem' THEN 'Redeemed a reward' ELSE 'Goodwill, ticket #' || k END,
       CASE what WHEN 'earn' THEN 'order' WHEN 'bonus' THEN 'bonus'
            WHEN 'redeem' THEN 'redemption' ELSE 'manual' END,
       CASE what WHEN 'earn' THEN 'long-' || k WHEN 'redeem' THEN 'L' || k ELSE '' END,
       CASE WHEN what = 'adjust' THEN %(owner)s END,
       CASE WHEN what = 'bonus' THEN 'qc-bonus:' || k END,
       CASE WHEN what IN ('earn', 'bonus') THEN at + interval '365 days' END, at
FROM qc_ledger, programs_member m
WHERE m.id = %(first_member)s
ORDER BY k;

INSERT INTO programs_redemption (tenant_id, member_id, reward_id, code, points_spent, status,
    entry_id, gift_key, created_at, used_at, cancelled_at)
SELECT e.tenant_id, e.member_id, %(reward)s, e.source_ref, 50,
       (ARRAY['issued', 'used', 'cancelled'])[1 + e.id %% 3], e.id, NULL, e.created_at,
       CASE WHEN e.id %% 3 = 1 THEN e.created_at + interval '1 day' END,
       CASE WHEN e.id %% 3 = 2 THEN e.created_at + interval '2 days' END
FROM programs_pointsentry e
WHERE e.tenant_id = %(tenant)s AND e.member_id = %(first_member)s AND e.kind = 'redeem'
  AND e.source_ref LIKE 'L%%';

INSERT INTO programs_tierchange (tenant_id, member_id, from_tier_id, to_tier_id, direction,
    qualifying_value, reason, created_at)
SELECT %(tenant)s, %(first_member)s,
       CASE WHEN k %% 2 = 0 THEN t.id END, CASE WHEN k %% 2 = 1 THEN t.id END,
       CASE WHEN k %% 2 = 1 THEN 'up' ELSE 'down' END, 100 + k, 'Yearly review',
       %(now)s - interval '300 days' + k * interval '5 days'
FROM generate_series(1, 40) AS k,
     LATERAL (SELECT id FROM programs_tier WHERE tenant_id = %(tenant)s
              ORDER BY threshold LIMIT 1) t;

UPDATE programs_member m
SET points_balance = m.points_balance + l.total,
    lifetime_points = m.lifetime_points + l.earned,
    orders_count = m.orders_count + l.orders,
    last_order_at = l.last, last_activity_at = l.last
FROM (SELECT sum(points) AS total, sum(points) FILTER (WHERE points > 0) AS earned,
             count(*) FILTER (WHERE what = 'earn') AS orders, max(at) AS last
      FROM qc_ledger) l
WHERE m.id = %(first_member)s;

DROP TABLE qc_ledger;
"""

SUBSCRIBERS = """
-- Numbers that aren't members (some never subscribed: they only texted us), then a number
-- for most members (one in twenty unsubscribed, one in twenty pending; one in thirteen has
-- none): the newest pages show members' numbers.
INSERT INTO messaging_subscriber (tenant_id, phone, member_id, status, source, timezone,
    timezone_candidates, region, country, pending_since, subscribed_at, unsubscribed_at,
    last_inbound_at, last_message_at, unread_count, needs_attention, created_at, updated_at)
SELECT %(tenant)s, '+1917555' || lpad(n::text, 4, '0'), NULL,
       (ARRAY['subscribed', 'subscribed', 'unsubscribed', 'none'])[1 + n %% 4],
       (ARRAY['keyword', 'web_form', 'keyword', 'keyword'])[1 + n %% 4],
       'America/New_York', '{}', 'NY', 'US', NULL,
       CASE WHEN n %% 4 IN (0, 1, 2) THEN %(now)s - n * interval '3 hours' END,
       CASE WHEN n %% 4 = 2 THEN %(now)s - n * interval '1 hour' END,
       NULL, NULL, 0, FALSE, %(now)s - n * interval '3 hours', %(now)s
FROM generate_series(1, %(loose)s) AS n;

INSERT INTO messaging_subscriber (tenant_id, phone, member_id, status, source, timezone,
    timezone_candidates, region, country, pending_since, subscribed_at, unsubscribed_at,
    last_inbound_at, last_message_at, unread_count, needs_attention, created_at, updated_at)
SELECT m.tenant_id, m.phone, m.id, st.status,
       (ARRAY['checkout', 'keyword', 'web_form', 'import', 'loyalty_page'])[1 + m.id %% 5],
       CASE WHEN m.id %% 7 = 0 THEN '' ELSE 'America/New_York' END,
       CASE WHEN m.id %% 7 = 0 THEN ARRAY['America/New_York', 'America/Chicago']::varchar[]
            ELSE '{}'::varchar[] END,
       'NY', 'US',
       CASE WHEN st.status = 'pending' THEN m.enrolled_at END,
       CASE WHEN st.status IN ('subscribed', 'unsubscribed') THEN m.enrolled_at END,
       CASE WHEN st.status = 'unsubscribed' THEN m.enrolled_at + interval '30 days' END,
       NULL, NULL, 0, FALSE, m.enrolled_at, %(now)s
FROM programs_member m
CROSS JOIN LATERAL (
    SELECT CASE WHEN m.id %% 20 = 0 THEN 'unsubscribed' WHEN m.id %% 20 = 1 THEN 'pending'
                ELSE 'subscribed' END AS status
) st
WHERE m.tenant_id = %(tenant)s AND m.external_id LIKE 'bulk%%' AND m.id %% 13 <> 0
ORDER BY m.id;

UPDATE programs_member m SET sms_status = s.status
FROM messaging_subscriber s
WHERE s.tenant_id = %(tenant)s AND s.member_id = m.id AND m.external_id LIKE 'bulk%%';

-- Consent evidence: how each number came in, and how the unsubscribed ones left.
INSERT INTO messaging_consentrecord (tenant_id, subscriber_id, action, source,
    disclosure_text, disclosure_version, page_url, ip, user_agent, keyword, message_body,
    inbound_sid, confirmation_text, evidence, actor, created_at)
SELECT s.tenant_id, s.id,
       CASE WHEN s.status = 'pending' THEN 'opt_in_requested' WHEN s.source = 'import'
            THEN 'imported' ELSE 'opt_in' END,
       s.source, 'By subscribing you agree to receive recurring automated marketing texts.',
       '1', CASE WHEN s.source = 'web_form' THEN 'https://shop.example.com/join' ELSE '' END,
       CASE WHEN s.source = 'web_form' THEN '203.0.113.7'::inet END,
       CASE WHEN s.source = 'web_form' THEN 'Mozilla/5.0' ELSE '' END,
       CASE WHEN s.source = 'keyword' THEN 'JOIN' ELSE '' END,
       CASE WHEN s.source = 'keyword' THEN 'JOIN' ELSE '' END, '', '',
       CASE WHEN s.source = 'import' THEN '{"file": "list.csv", "line": 2}'::jsonb
            ELSE '{}'::jsonb END,
       '', coalesce(s.subscribed_at, s.pending_since, s.created_at)
FROM messaging_subscriber s
WHERE s.tenant_id = %(tenant)s AND s.status <> 'none' AND s.id > %(last_subscriber)s;

INSERT INTO messaging_consentrecord (tenant_id, subscriber_id, action, source,
    disclosure_text, disclosure_version, page_url, ip, user_agent, keyword, message_body,
    inbound_sid, confirmation_text, evidence, actor, created_at)
SELECT s.tenant_id, s.id, 'opt_out', 'keyword', '', '', '', NULL, '', 'STOP', 'STOP', '',
       'You are unsubscribed and will receive no further messages.', '{}', '',
       s.unsubscribed_at
FROM messaging_subscriber s
WHERE s.tenant_id = %(tenant)s AND s.status = 'unsubscribed' AND s.id > %(last_subscriber)s;

-- Replies: two of every three numbers wrote to us once or twice; a few might be opt-outs.
INSERT INTO messaging_inboundmessage (tenant_id, subscriber_id, carrier_sid, from_number,
    to_number, body, num_media, kind, needs_attention, created_at)
SELECT s.tenant_id, s.id, 'SMqc' || lpad(s.id::text, 12, '0') || k, s.phone, %(sender_phone)s,
       CASE WHEN s.id %% 29 = 0 AND k = 2 THEN 'please stop texting me'
            WHEN k = 1 THEN 'Is the store open on Sunday?' ELSE 'Thanks!' END,
       CASE WHEN s.id %% 11 = 0 THEN 1 ELSE 0 END, 'reply',
       s.id %% 29 = 0 AND k = 2,
       %(now)s - interval '20 days' + (s.id %% 1000) * interval '17 minutes' + k * interval '1 hour'
FROM messaging_subscriber s
CROSS JOIN generate_series(1, 2) AS k
WHERE s.tenant_id = %(tenant)s AND s.id > %(last_subscriber)s AND s.id %% 3 <> 0
  AND (k = 1 OR s.id %% 2 = 0);

-- The first number's long history: hundreds of texts both ways and consent changes.
INSERT INTO messaging_inboundmessage (tenant_id, subscriber_id, carrier_sid, from_number,
    to_number, body, num_media, kind, needs_attention, created_at)
SELECT s.tenant_id, s.id, 'SMqclong' || lpad(k::text, 8, '0'), s.phone, %(sender_phone)s,
       CASE WHEN k %% 50 = 0 THEN 'HELP' ELSE 'Reply number ' || k END,
       CASE WHEN k %% 13 = 0 THEN 2 ELSE 0 END,
       CASE WHEN k %% 50 = 0 THEN 'help' ELSE 'reply' END, k %% 97 = 0,
       %(now)s - interval '300 days' + k * interval '12 hours'
FROM messaging_subscriber s, generate_series(1, %(thread)s) AS k
WHERE s.id = %(first_subscriber)s;

INSERT INTO messaging_outboundmessage (tenant_id, subscriber_id, sender_id, "to", kind, source,
    source_ref, dedupe_key, body, encoding, segments, price_estimate, status, status_reason,
    error_code, carrier_sid, attempts, send_after, expires_at, created_at, sending_at, sent_at,
    delivered_at, finished_at, updated_at)
SELECT s.tenant_id, s.id, %(sender)s, s.phone::text,
       CASE WHEN k %% 3 = 0 THEN 'marketing' ELSE 'transactional' END,
       CASE WHEN k %% 3 = 0 THEN 'api' ELSE 'inbox' END, 'alice@bakery.test',
       'qc-long:' || k, 'Answer number ' || k || E'\\nReply STOP to opt out', 'GSM-7',
       1 + k %% 2, 0.0083 * (1 + k %% 2),
       (ARRAY['delivered', 'sent', 'failed', 'undelivered', 'delivered'])[1 + k %% 5],
       CASE WHEN k %% 5 = 2 THEN 'carrier rejected' ELSE '' END,
       CASE WHEN k %% 5 IN (2, 3) THEN '30007' ELSE '' END,
       'SMqcout' || lpad(k::text, 10, '0'), 1, at, NULL, at, at, at,
       CASE WHEN k %% 5 IN (0, 4) THEN at + interval '5 seconds' END,
       at + interval '5 seconds', at + interval '5 seconds'
FROM messaging_subscriber s,
     LATERAL (SELECT k, %(now)s - interval '300 days' + k * interval '12 hours'
                        + interval '1 minute' AS at
              FROM generate_series(1, %(thread)s) AS k) g
WHERE s.id = %(first_subscriber)s;

INSERT INTO messaging_consentrecord (tenant_id, subscriber_id, action, source,
    disclosure_text, disclosure_version, page_url, ip, user_agent, keyword, message_body,
    inbound_sid, confirmation_text, evidence, actor, created_at)
SELECT s.tenant_id, s.id, CASE WHEN k %% 2 = 1 THEN 'opt_out' ELSE 'opt_in' END,
       CASE WHEN k %% 4 = 3 THEN 'dashboard' ELSE 'keyword' END, '', '', '', NULL, '',
       CASE WHEN k %% 2 = 1 THEN 'STOP' ELSE 'START' END,
       CASE WHEN k %% 2 = 1 THEN 'STOP' ELSE 'START' END, 'SMqclong' || lpad(k::text, 8, '0'),
       '', CASE WHEN k %% 4 = 3 THEN '{"reason": "asked by phone"}'::jsonb
                ELSE '{}'::jsonb END,
       CASE WHEN k %% 4 = 3 THEN 'alice@bakery.test' ELSE '' END,
       %(now)s - interval '300 days' + k * interval '3 days'
FROM messaging_subscriber s, generate_series(1, 2 * (%(thread)s / 8)) AS k
WHERE s.id = %(first_subscriber)s;

UPDATE messaging_subscriber s
SET last_inbound_at = i.last, last_message_at = i.last, unread_count = i.n,
    needs_attention = i.attention
FROM (SELECT subscriber_id, max(created_at) AS last, count(*) AS n,
             bool_or(needs_attention) AS attention
      FROM messaging_inboundmessage WHERE tenant_id = %(tenant)s GROUP BY subscriber_id) i
WHERE s.id = i.subscriber_id AND s.tenant_id = %(tenant)s;
"""

CAMPAIGN = """
-- The first campaign went to every subscribed number as well: 5%% held out, 5%% skipped by
-- smart sending, the rest texted (delivered, mostly), a third of those clicked its link, one
-- order in ten credited to it.
INSERT INTO automations_campaignrecipient (tenant_id, campaign_id, subscriber_id, "group",
    variant_id, skip_reason)
SELECT s.tenant_id, %(campaign)s, s.id,
       CASE WHEN s.id %% 20 = 7 THEN 'holdout' WHEN s.id %% 20 = 8 THEN 'skipped'
            ELSE 'remainder' END,
       NULL, CASE WHEN s.id %% 20 = 8 THEN 'smart_sending' ELSE '' END
FROM messaging_subscriber s
WHERE s.tenant_id = %(tenant)s AND s.status = 'subscribed' AND s.id > %(last_subscriber)s
ORDER BY s.id;

INSERT INTO messaging_outboundmessage (tenant_id, subscriber_id, sender_id, "to", kind, source,
    source_ref, dedupe_key, body, encoding, segments, price_estimate, status, status_reason,
    error_code, carrier_sid, attempts, send_after, expires_at, created_at, sending_at, sent_at,
    delivered_at, finished_at, updated_at)
SELECT r.tenant_id, s.id, %(sender)s, s.phone::text, 'marketing', 'campaign',
       %(campaign)s::text, 'campaign:' || %(campaign)s || ':' || s.id,
       E'News! Shop: https://lsms.example/l/Zq' || lpad(s.id::text, 10, '0')
           || E'\\nReply STOP to opt out',
       'GSM-7', 1, 0.0083, st.status,
       CASE WHEN st.status = 'failed' THEN 'unreachable' ELSE '' END,
       CASE WHEN st.status IN ('failed', 'undelivered') THEN '30003' ELSE '' END,
       CASE WHEN st.status = 'queued' THEN NULL ELSE 'SMqccamp' || lpad(s.id::text, 12, '0') END,
       CASE WHEN st.status = 'queued' THEN 0 ELSE 1 END, c.launched_at, NULL, c.launched_at,
       CASE WHEN st.status = 'queued' THEN NULL ELSE c.launched_at + interval '1 second' END,
       CASE WHEN st.status = 'queued' THEN NULL ELSE c.launched_at + interval '1 second' END,
       CASE WHEN st.status = 'delivered' THEN c.launched_at + interval '5 seconds' END,
       CASE WHEN st.status IN ('delivered', 'failed', 'undelivered')
            THEN c.launched_at + interval '5 seconds' END,
       %(now)s
FROM automations_campaignrecipient r
JOIN messaging_subscriber s ON s.id = r.subscriber_id AND s.tenant_id = r.tenant_id
JOIN automations_campaign c ON c.id = r.campaign_id
CROSS JOIN LATERAL (
    SELECT (ARRAY['delivered', 'delivered', 'delivered', 'delivered', 'delivered', 'sent',
                  'failed', 'undelivered', 'queued', 'delivered'])[1 + s.id %% 10] AS status
) st
WHERE r.tenant_id = %(tenant)s AND r.campaign_id = %(campaign)s AND r."group" = 'remainder'
  AND r.subscriber_id > %(last_subscriber)s
ORDER BY s.id;

INSERT INTO messaging_shortlink (tenant_id, code, target, subscriber_id, message_dedupe_key,
    created_at, first_clicked_at, clicks)
SELECT o.tenant_id, 'Zq' || lpad(o.subscriber_id::text, 10, '0'),
       'https://shop.example.com/news', o.subscriber_id, o.dedupe_key, o.created_at,
       CASE WHEN o.subscriber_id %% 3 = 0 THEN o.created_at + interval '10 minutes' END,
       CASE WHEN o.subscriber_id %% 3 = 0 THEN 1 + o.subscriber_id %% 4 ELSE 0 END
FROM messaging_outboundmessage o
WHERE o.tenant_id = %(tenant)s AND o.source = 'campaign'
  AND o.source_ref = %(campaign)s::text AND o.subscriber_id > %(last_subscriber)s;

INSERT INTO messaging_attribution (tenant_id, order_id, message_id, kind, source, source_ref,
    revenue, placed_at, touched_at, attributed_at)
SELECT o.tenant_id, ord.id, o.id, CASE WHEN o.subscriber_id %% 3 = 0 THEN 'click'
       ELSE 'delivery' END, 'campaign', %(campaign)s::text, ord.subtotal, ord.placed_at,
       o.created_at, %(now)s
FROM messaging_outboundmessage o
JOIN messaging_subscriber s ON s.id = o.subscriber_id
JOIN programs_order ord ON ord.tenant_id = o.tenant_id AND ord.member_id = s.member_id
     AND ord.order_id LIKE 'bulk-%%-2'
WHERE o.tenant_id = %(tenant)s AND o.source = 'campaign' AND o.source_ref = %(campaign)s::text
  AND o.status = 'delivered' AND o.subscriber_id %% 10 = 3;

UPDATE automations_campaign c
SET audience_count = g.total, remainder_count = g.remainder, holdout_count = g.holdout,
    skipped_count = g.skipped, created_count = g.remainder, remainder_cursor = g.last
FROM (SELECT count(*) AS total, count(*) FILTER (WHERE "group" = 'remainder') AS remainder,
             count(*) FILTER (WHERE "group" = 'holdout') AS holdout,
             count(*) FILTER (WHERE "group" = 'skipped') AS skipped,
             max(subscriber_id) AS last
      FROM automations_campaignrecipient
      WHERE tenant_id = %(tenant)s AND campaign_id = %(campaign)s) g
WHERE c.id = %(campaign)s;

-- More campaigns than a page shows: sent ones over the last weeks (with their counters),
-- scheduled ones, drafts and a canceled one.
INSERT INTO automations_campaign (tenant_id, name, body, segment_ids, exclude_segment_ids,
    status, send_mode, send_at, local_date, local_time, expires_hours, smart_sending_hours,
    holdout_percent, ab_test, test_percent, winner_metric, wait_minutes, winner_id,
    winner_due_at, winner_chosen_at, winner_scores, launched_at, frozen_at, test_created_at,
    finished_at, canceled_at, progress_at, audience_count, test_count, remainder_count,
    holdout_count, skipped_count, created_count, test_cursor, remainder_cursor,
    canceled_count, created_by_id, created_at, updated_at)
SELECT %(tenant)s, 'Weekly news #' || k, 'Hi {first_name|there}! New this week.',
       ARRAY[%(segment)s]::bigint[], '{}'::bigint[], st.status,
       CASE WHEN st.status = 'scheduled' THEN 'at' ELSE 'now' END,
       CASE WHEN st.status = 'scheduled' THEN %(now)s + k * interval '1 day' END,
       NULL, NULL, NULL, CASE WHEN k %% 2 = 0 THEN 24 END, CASE WHEN k %% 5 = 0 THEN 10 ELSE 0 END,
       FALSE, 20, 'clicks', 240, NULL, NULL, NULL, '{}',
       CASE WHEN st.status IN ('sent', 'canceled') THEN %(now)s - k * interval '9 hours' END,
       CASE WHEN st.status IN ('sent', 'canceled') THEN %(now)s - k * interval '9 hours' END,
       NULL,
       CASE WHEN st.status = 'sent' THEN %(now)s - k * interval '9 hours' END,
       CASE WHEN st.status = 'canceled' THEN %(now)s - k * interval '8 hours' END,
       NULL, CASE WHEN st.status = 'sent' THEN 1000 + k ELSE 0 END, 0,
       CASE WHEN st.status = 'sent' THEN 900 + k ELSE 0 END,
       CASE WHEN st.status = 'sent' AND k %% 5 = 0 THEN 100 ELSE 0 END, 0,
       CASE WHEN st.status = 'sent' THEN 900 + k ELSE 0 END, 0, 0, 0,
       CASE WHEN k %% 2 = 0 THEN %(owner)s END,
       %(now)s - k * interval '10 hours', %(now)s - k * interval '10 hours'
FROM generate_series(1, %(campaigns)s) AS k
CROSS JOIN LATERAL (
    SELECT CASE WHEN k %% 10 = 1 THEN 'draft' WHEN k %% 10 = 2 THEN 'scheduled'
                WHEN k = 7 THEN 'canceled' ELSE 'sent' END AS status
) st;
"""

FLOW_RUNS = """
-- A run of the first flow for every member: done (its text sent), still waiting, or exited.
INSERT INTO automations_flowrun (tenant_id, flow_id, member_id, subscriber_id, person,
    occurrence, status, step, next_run_at, entered_at, finished_at, exit_reason, context,
    steps_taken)
SELECT m.tenant_id, %(flow)s, m.id, s.id, 'm' || m.id, 'qc' || m.id, st.status, 't',
       CASE WHEN st.status = 'active' THEN %(now)s + interval '1 day' END, m.enrolled_at,
       CASE WHEN st.status <> 'active' THEN m.enrolled_at + interval '1 minute' END,
       CASE WHEN st.status = 'exited' THEN 'order_placed' ELSE '' END,
       jsonb_build_object('event', m.id), CASE WHEN st.status = 'done' THEN 1 ELSE 0 END
FROM programs_member m
LEFT JOIN messaging_subscriber s ON s.member_id = m.id AND s.tenant_id = m.tenant_id
CROSS JOIN LATERAL (
    SELECT CASE WHEN m.id %% 10 = 0 THEN 'active' WHEN m.id %% 10 = 1 THEN 'exited'
                ELSE 'done' END AS status
) st
WHERE m.tenant_id = %(tenant)s AND m.external_id LIKE 'bulk%%'
ORDER BY m.id;

INSERT INTO messaging_outboundmessage (tenant_id, subscriber_id, sender_id, "to", kind, source,
    source_ref, dedupe_key, body, encoding, segments, price_estimate, status, status_reason,
    error_code, carrier_sid, attempts, send_after, expires_at, created_at, sending_at, sent_at,
    delivered_at, finished_at, updated_at)
SELECT r.tenant_id, r.subscriber_id, %(sender)s, s.phone::text, 'marketing', 'flow',
       %(flow)s::text, 'flow:' || r.id || ':t', E'Hi!\\nReply STOP to opt out', 'GSM-7', 1,
       0.0083, 'delivered', '', '', 'SMqcflow' || lpad(r.id::text, 12, '0'), 1,
       r.finished_at, NULL, r.finished_at, r.finished_at, r.finished_at, r.finished_at,
       r.finished_at, %(now)s
FROM automations_flowrun r JOIN messaging_subscriber s ON s.id = r.subscriber_id
WHERE r.tenant_id = %(tenant)s AND r.flow_id = %(flow)s AND r.occurrence LIKE 'qc%%'
  AND r.status = 'done' AND s.status = 'subscribed';

INSERT INTO automations_flowrunlog (tenant_id, run_id, flow_id, step, action, detail,
    created_at)
SELECT r.tenant_id, r.id, r.flow_id, 't', a.action,
       CASE WHEN a.action = 'sent' THEN 'flow:' || r.id || ':t' ELSE '' END,
       r.entered_at + a.n * interval '1 second'
FROM automations_flowrun r
LEFT JOIN messaging_subscriber s ON s.id = r.subscriber_id
CROSS JOIN LATERAL (
    VALUES (0, 'entered'),
           (1, CASE WHEN r.status = 'done' AND s.status = 'subscribed' THEN 'sent'
                    WHEN r.status = 'done' THEN 'not_texted' ELSE 'exited' END),
           (2, CASE WHEN r.status = 'done' THEN 'ended' END)
) AS a(n, action)
WHERE r.tenant_id = %(tenant)s AND r.flow_id = %(flow)s AND r.occurrence LIKE 'qc%%'
  AND a.action IS NOT NULL AND (r.status <> 'active' OR a.n = 0)
ORDER BY r.id, a.n;

-- The first member went through every flow, many times.
INSERT INTO automations_flowrun (tenant_id, flow_id, member_id, subscriber_id, person,
    occurrence, status, step, next_run_at, entered_at, finished_at, exit_reason, context,
    steps_taken)
SELECT f.tenant_id, f.id, %(first_member)s, %(first_subscriber)s, 'm' || %(first_member)s,
       'qclong' || k, CASE WHEN k = 1 THEN 'active' ELSE 'done' END, f.steps ->> 'start',
       CASE WHEN k = 1 THEN %(now)s + interval '1 day' END,
       %(now)s - k * interval '3 days',
       CASE WHEN k > 1 THEN %(now)s - k * interval '3 days' + interval '1 hour' END, '', '{}',
       CASE WHEN k = 1 THEN 0 ELSE 1 END
FROM automations_flow f, generate_series(1, 12) AS k
WHERE f.tenant_id = %(tenant)s;
"""

TEAM = """
INSERT INTO loyaltysms_user (password, last_login, is_superuser, first_name, last_name,
    is_staff, is_active, date_joined, email)
SELECT '!', NULL, FALSE, 'Teammate', '' || n, FALSE, TRUE, %(now)s,
       'teammate' || n || '@bakery.test'
FROM generate_series(1, %(team)s) AS n;

INSERT INTO loyaltysms_membership (tenant_id, user_id, role, created_at)
SELECT %(tenant)s, u.id, (ARRAY['admin', 'marketer', 'viewer'])[1 + u.id %% 3], %(now)s
FROM loyaltysms_user u WHERE u.email LIKE 'teammate%%@bakery.test';

INSERT INTO loyaltysms_invitation (tenant_id, email, role, token_hash, invited_by_id,
    created_at, expires_at, accepted_at, revoked_at)
SELECT %(tenant)s, 'invitee' || n || '@bakery.test', 'marketer',
       md5('qc-invitation' || n) || md5('qc-invitation-2' || n), %(owner)s, %(now)s,
       %(now)s + interval '7 days', NULL, NULL
FROM generate_series(1, %(invitations)s) AS n;

INSERT INTO loyaltysms_apikey (tenant_id, name, prefix, key_hash, created_by_id, created_at,
    last_used_at, revoked_at)
SELECT %(tenant)s, 'Storefront ' || n, 'qc' || lpad(n::text, 10, '0'),
       md5('qc-key' || n) || md5('qc-key-2' || n), CASE WHEN n %% 2 = 0 THEN %(owner)s END,
       %(now)s - n * interval '1 day',
       CASE WHEN n %% 3 = 0 THEN %(now)s - interval '1 hour' END,
       CASE WHEN n %% 4 = 0 THEN %(now)s - interval '2 hours' END
FROM generate_series(1, %(api_keys)s) AS n;

INSERT INTO loyaltysms_auditevent (tenant_id, actor_id, action, target, detail, created_at)
SELECT %(tenant)s, CASE WHEN n %% 3 = 0 THEN NULL ELSE %(owner)s END,
       (ARRAY['campaign.created', 'segment.updated', 'reward.created', 'flow.live',
              'program.updated'])[1 + n %% 5],
       'Thing ' || n, jsonb_build_object('n', n), %(now)s - n * interval '1 hour'
FROM generate_series(1, %(audit)s) AS n;
"""


def _sizes(members: int) -> dict[str, int]:
    return {
        "members": members,
        "loose": members // 5,  # numbers that aren't members
        "ledger": 600,  # the first member's entries
        "thread": 400,  # the first subscriber's texts each way
        "campaigns": 70,
        "team": 12,
        "invitations": 8,
        "api_keys": 30,
        "audit": 400,
    }


def seed_large(tenant: Tenant, *, owner: User, members: int = 2500, now: datetime | None = None):
    """Make `tenant` a busy brand (see the module). Returns the sizes asked for."""
    now = now or timezone.now()
    sizes = _sizes(members)
    first = targets(tenant)
    sender = sender_default(tenant)
    # A few rows through the services (they validate what the pages then describe).
    with tenant_scope(tenant):
        tier_create(
            tenant=tenant,
            name="Platinum",
            threshold=Decimal(500),
            basis="points_earned",
            period="lifetime",
        )
        tier_create(
            tenant=tenant,
            name="Diamond",
            threshold=Decimal(1000),
            basis="points_earned",
            period="lifetime",
            perks="Free shipping",
        )
        reward = None
        for n in range(30):
            made = reward_create(
                tenant=tenant,
                name=f"Reward {n}",
                kind="percent_off" if n % 2 else "fixed_amount",
                points_cost=100 + 10 * n,
                value=str(5 + n % 50),
            )
            reward = reward or made
        for n in range(12):
            multiplier_event_create(
                tenant=tenant,
                name=f"Double days {n}",
                multiplier=Decimal(2),
                starts_at=now + timedelta(days=n),
                ends_at=now + timedelta(days=n, hours=48),
            )
    settings_changed(tenant)
    for n in range(60):
        segment_create(
            tenant=tenant,
            name=f"Segment {n:02d}",
            rules={
                "all": [
                    {"field": "sms_status", "op": "is", "value": "subscribed"},
                    {"field": "points_balance", "op": "gte", "value": 10 * n},
                ]
            },
            now=now,
        )
    for prebuilt in CATALOGUE:
        with contextlib.suppress(ProblemError):  # refused: the brand lacks what it needs
            flow_install(
                tenant=tenant,
                key=prebuilt.key,
                now=now,
                shop_url="https://shop.example.com",
                survey_url="https://shop.example.com/survey",
            )
    with tenant_scope(tenant):
        last_subscriber = Subscriber.objects.order_by("-id").values_list("id", flat=True)[0]
    params = {
        **sizes,
        "tenant": tenant.pk,
        "now": now,
        "owner": owner.pk,
        "first_names": FIRST_NAMES,
        "last_names": LAST_NAMES,
        "sender": sender.pk,
        "sender_phone": sender.phone_number,
        "campaign": first.campaign,
        "flow": first.flow,
        "segment": first.segment,
        "first_member": first.member,
        "first_subscriber": first.subscriber,
        "last_subscriber": last_subscriber,
        "reward": reward.pk,
    }
    with connection.cursor() as cursor:
        for script in (MEMBERS, LONG_LEDGER, SUBSCRIBERS, CAMPAIGN, FLOW_RUNS, TEAM):
            cursor.execute(script, params)
        cursor.execute("ANALYZE")
    settings_changed(tenant)
    return sizes
