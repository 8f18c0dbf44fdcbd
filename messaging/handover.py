"""Which texts of a batch may have left for the carrier, known even if the dispatcher dies.

A batch's texts are `sending` from their claim until its outcomes are recorded, at the end of
the one transaction that holds their rows while the batch is sent (messaging.services.dispatch).
A dispatcher killed in between leaves all of them `sending`, and without more none could ever
be sent again: any of them might have reached the carrier. So before a request leaves, its
text's id and attempt are committed to `messaging_handover` on a connection of the
dispatcher's own (the batch's transaction, still open, can't make them visible), flushed to
disk, a few texts at a time (those due within MARK_AHEAD); a text whose mark failed is not
sent. Marks are per attempt, so a retry's mark never waits on the removal of the last one's.

After a crash, a stale `sending` text with no mark never left and goes back to the queue; one
with a mark becomes `unknown` unless the carrier's receipt settles it. What can end `unknown`
is what was marked but not yet answered: the texts due within MARK_AHEAD (one at 100 texts/s)
plus the requests in flight. A batch deletes its marks on the same connection once its
outcomes are committed (never before: a crash in between would leave sent texts unmarked), so
the table holds little more than the batches under way; `purge` drops what a crash left.
"""

from __future__ import annotations

import logging

from django.db import connection

logger = logging.getLogger(__name__)

# Texts marked together: those due within this many seconds of the first. One commit per
# MARK_AHEAD at most, whatever the sender's rate.
MARK_AHEAD = 0.01
# How the marks' connections show in pg_stat_activity.
APPLICATION = "loyaltysms handover"

MARK = """
INSERT INTO messaging_handover (message_id, attempt, at)
SELECT message_id, attempt, now()
FROM unnest(%s::bigint[], %s::smallint[]) AS t(message_id, attempt)
ON CONFLICT DO NOTHING
"""
FORGET = "DELETE FROM messaging_handover WHERE message_id = ANY(%s::bigint[])"
# Marks older than a cutoff whose texts aren't `sending` any more.
PURGE = """
DELETE FROM messaging_handover h
WHERE h.at < %s AND NOT EXISTS (
    SELECT 1 FROM messaging_outboundmessage m WHERE m.id = h.message_id AND m.status = 'sending'
)
"""
# Of these texts, those whose current attempt is marked.
MARKED = """
SELECT h.message_id
FROM messaging_handover h JOIN messaging_outboundmessage m
    ON m.id = h.message_id AND m.attempts = h.attempt
WHERE h.message_id = ANY(%s::bigint[])
"""


class Marker:
    """A dispatcher lane's marks, on a PostgreSQL connection of its own (autocommit: each mark
    is committed, and waits for the disk, before `mark` returns). Used by one batch at a
    time, from whichever thread it runs on; open it in the thread that owns the database
    settings (the dispatcher's) and close it when done."""

    def __init__(self):
        self._params = {**connection.get_connection_params(), "application_name": APPLICATION}
        self._connect = connection.get_new_connection
        self._conn = None

    def mark(self, texts: list[tuple[int, int]]) -> None:
        """Commit these (text id, attempt) marks; raises if they may not be written."""
        self._execute(MARK, [[t[0] for t in texts], [t[1] for t in texts]])

    def forget(self, message_ids: list[int]) -> None:
        """Drop these texts' marks once their batch's outcomes are committed. Best effort: a
        mark left behind costs a row until `purge`, never a decision."""
        try:
            self._execute(FORGET, [message_ids])
        except Exception:
            logger.warning("marks of %s texts not removed", len(message_ids), exc_info=True)

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
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def __enter__(self) -> Marker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def marked(cursor, message_ids: list[int]) -> set[int]:
    """Of these texts, those marked as handed over in their current attempt (on the caller's
    connection)."""
    cursor.execute(MARKED, [message_ids])
    return {row[0] for row in cursor.fetchall()}


def forget(cursor, message_ids: list[int]) -> None:
    """Drop the marks (of every attempt) of texts settled in the caller's transaction."""
    cursor.execute(FORGET, [message_ids])


def purge(cursor, before) -> int:
    """Drop marks made before `before` whose texts are no longer `sending`."""
    cursor.execute(PURGE, [before])
    return cursor.rowcount
