"""Which texts of a batch may have left for the carrier, known even if the dispatcher dies.

A batch's texts are `sending` from their claim until its outcomes are recorded, at the end of
the one transaction that holds their rows while the batch is sent (messaging.services.dispatch).
A dispatcher killed in between leaves all of them `sending`, and without more none could ever
be sent again: any of them might have reached the carrier. So each claim takes a number of
its own (`messaging_claim_seq`, stored on its texts as `claim`), and before a request leaves,
its text's (id, claim) is committed to `messaging_handover` on a connection of the
dispatcher's own (the batch's transaction, still open, can't make it visible), flushed to
disk, a few texts at a time (those due within MARK_AHEAD); a text whose mark failed is not
sent. A batch sends only the texts still `sending` under its own claim, so a claim that was
settled and claimed again meanwhile is never sent twice by a dispatcher that stalled.

After a crash, a stale `sending` text with no mark for its claim never left and goes back to
the queue (a text claimed without a claim number, by a release that kept none, becomes
`unknown`); one with a mark becomes `unknown` unless the carrier's receipt settles it. What
can end `unknown` is what was marked but not yet answered: the texts due within MARK_AHEAD
(one at 100 texts/s) plus the requests in flight. A batch deletes its marks on the same
connection once its outcomes are committed (never before: a crash in between would leave
sent texts unmarked); `purge` drops what a crash left.

The marks are as durable as the primary's disk: with asynchronous replicas, a failover can
lose the last marks (docs/operations.md says what that means).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from django.db import connection

logger = logging.getLogger(__name__)

# Texts marked together: those due within this many seconds of the first's slot (one text
# per commit up to 100 texts/s; ten at 1,000). Fewer commits would mean more texts a crash can
# leave marked and not sent, so a sender that falls behind still marks one slot at a time.
MARK_AHEAD = 0.01
# How the marks' connections show in pg_stat_activity.
APPLICATION = "loyaltysms handover"
# A mark that can't be written within this long fails (its batch stops: nothing unmarked
# leaves), rather than hold the batch's subscribers — and a STOP to one of them — waiting.
MARK_TIMEOUT_MS = 5000
CLAIM = "SELECT nextval('messaging_claim_seq')"
MARK = """
INSERT INTO messaging_handover (message_id, claim, at)
SELECT message_id, claim, now()
FROM unnest(%s::bigint[], %s::bigint[]) AS t(message_id, claim)
ON CONFLICT DO NOTHING
"""
FORGET = """
DELETE FROM messaging_handover
WHERE (message_id, claim) IN (SELECT * FROM unnest(%s::bigint[], %s::bigint[]))
"""
FORGET_TEXTS = "DELETE FROM messaging_handover WHERE message_id = ANY(%s::bigint[])"
# Of these texts, those whose current claim is marked.
MARKED = """
SELECT h.message_id
FROM messaging_handover h JOIN messaging_outboundmessage m
    ON m.id = h.message_id AND m.claim = h.claim
WHERE h.message_id = ANY(%s::bigint[])
"""
# Marks older than a cutoff that aren't a `sending` text's current claim's.
PURGE = """
DELETE FROM messaging_handover h
WHERE h.at < %s AND NOT EXISTS (
    SELECT 1 FROM messaging_outboundmessage m
    WHERE m.id = h.message_id AND m.claim = h.claim AND m.status = 'sending'
)
"""


def new_claim(cursor) -> int:
    cursor.execute(CLAIM)
    return cursor.fetchone()[0]


class Marker:
    """A dispatcher lane's marks, on a PostgreSQL connection of its own (autocommit: each mark
    is committed, and waits for the disk, before `mark` returns), used from a thread of its
    own (`executor`), so a slow mark holds up only its lane. Open it in the thread that owns
    the database settings (the dispatcher's) and close it when done."""

    def __init__(self):
        params = connection.get_connection_params()
        options = f"{params.get('options', '')} -c statement_timeout={MARK_TIMEOUT_MS}".strip()
        self._params = {
            **params,
            "application_name": APPLICATION,
            "connect_timeout": max(1, MARK_TIMEOUT_MS // 1000),
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
            "options": options,
        }
        self._connect = connection.get_new_connection
        self._conn = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="handover")

    def mark(self, texts: list[tuple[int, int]]) -> None:
        """Commit these (text id, claim) marks; raises if they may not be written."""
        self._execute(MARK, [[t[0] for t in texts], [t[1] for t in texts]])

    def forget(self, texts: list[tuple[int, int]]) -> None:
        """Drop these (text id, claim) marks once their batch's outcomes are committed. Best
        effort: a mark left behind costs a row until `purge`, never a decision."""
        try:
            self._execute(FORGET, [[t[0] for t in texts], [t[1] for t in texts]])
        except Exception:
            logger.warning("marks of %s texts not removed", len(texts), exc_info=True)

    def _execute(self, sql: str, params: list) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect(self._params)
                self._conn.autocommit = True
                with self._conn.cursor() as cursor:
                    cursor.execute("SET synchronous_commit TO on")
            with self._conn.cursor() as cursor:
                cursor.execute(sql, params)
        except Exception:
            self._disconnect()
            raise

    def _disconnect(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self._disconnect()

    def __enter__(self) -> Marker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def marked(cursor, message_ids: list[int]) -> set[int]:
    """Of these texts, those marked as handed over under their current claim (on the
    caller's connection)."""
    cursor.execute(MARKED, [message_ids])
    return {row[0] for row in cursor.fetchall()}


def forget_texts(cursor, message_ids: list[int]) -> None:
    """Drop every mark of texts settled in the caller's transaction."""
    cursor.execute(FORGET_TEXTS, [message_ids])


def purge(cursor, before) -> int:
    """Drop marks made before `before` that no `sending` text's claim relies on."""
    cursor.execute(PURGE, [before])
    return cursor.rowcount
