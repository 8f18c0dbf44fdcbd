"""Issue 9, PostgreSQL restarted mid-campaign: a 10,000-text campaign sent by a real Celery
worker while the database is stopped (every connection cut) and started again, twice — once
for a moment, once for 20 seconds. Afterwards the same guarantees as for killed workers: no
text lost, none sent twice, `unknown` ≤ restarts (chaos.campaign)."""

from __future__ import annotations

from collections import Counter

from chaos.campaign import CampaignRun

# (texts sent since the last restart, seconds the database stays down)
RESTARTS = [(1500, 0.0), (2000, 20.0)]


def test_campaign_survives_postgres_restarts(chaos_env, private_postgres, private_redis, workdir):
    run = CampaignRun(env=chaos_env, workdir=workdir, redis_url=private_redis.url, slug="pgrestart")
    state = {"sent_at_start": None}

    def restart_mid_send(run: CampaignRun, status: Counter) -> None:
        if not status:
            return  # the database is on its way back
        sent = status["sent"]
        if state["sent_at_start"] is None:
            state["sent_at_start"] = sent
            return
        after, down_for = RESTARTS[run.faults]
        if sent - state["sent_at_start"] < after:
            return
        private_postgres.restart(down_for=down_for)
        run.faults += 1
        run.event(f"postgres restart {run.faults}, down {down_for:.0f}s ({dict(status)})")
        state["sent_at_start"] = None

    run.send(restart_mid_send, faults=len(RESTARTS))
    outcome = run.verify()
    assert outcome["faults"] == private_postgres.restarts == len(RESTARTS)
