"""Issue 9, first fault: a 10,000-text campaign sent by real Celery workers that are killed
(kill -9, the whole process group) four times mid-send and restarted, with the broker's Redis
restarted once. Afterwards: no text lost, none sent twice, `unknown` ≤ kills (chaos.campaign)."""

from __future__ import annotations

import random
from collections import Counter

from chaos.campaign import CampaignRun

KILLS = 4
REDIS_RESTART_AFTER_KILL = 2  # the broker's Redis restarts after this kill


def test_campaign_survives_killed_workers_and_a_redis_restart(chaos_env, private_redis, workdir):
    run = CampaignRun(env=chaos_env, workdir=workdir, redis_url=private_redis.url, slug="kills")
    pick = random.Random(9)  # noqa: S311 - when to kill, not a secret
    # Each kill lands while a (re)started worker is sending: after it has sent another
    # 100-400 texts (1-4 s at 100/s), at a point no batch boundary predicts.
    state = {"sent_at_start": None, "after": pick.randint(100, 400)}

    def kill_mid_send(run: CampaignRun, status: Counter) -> None:
        sent = status["sent"]
        if state["sent_at_start"] is None:
            state["sent_at_start"] = sent
            return
        if sent - state["sent_at_start"] < state["after"]:
            return
        run.workers.kill()
        run.faults += 1
        run.event(f"kill {run.faults} ({dict(status)})")
        if run.faults == REDIS_RESTART_AFTER_KILL:
            private_redis.restart()
            run.event("redis restarted")
        run.workers.start()
        run.wake()
        state.update(sent_at_start=None, after=pick.randint(100, 400))

    run.send(kill_mid_send, faults=KILLS)
    outcome = run.verify()
    assert outcome["faults"] == KILLS and private_redis.restarts == 1
