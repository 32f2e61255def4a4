"""Jobs that reported in_progress and never completed (a runner died, a callback was lost).

After CRCR_ZOMBIE_TIMEOUT such a job is completed as `timed_out`, in Redis (so its state
machine is settled) and on its HUD record. A genuine `completed` arriving later still replaces
the `timed_out` (relay/state.py lets it). The HUD store's in-progress records are the tracker
(they survive a Redis restart), read and written through the store, whichever backend it is.
With chdb, which only the web process may open, the worker leaves this job alone.
"""

import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from crcr_site import metrics
from hud.storage import HudRecord, RecordKey, get_store
from relay import redis_keys, state
from relay.upstream_pr import check_runs

logger = logging.getLogger(__name__)

BATCH = 500


def sweep() -> int:
    """Time out the jobs in progress for longer than CRCR_ZOMBIE_TIMEOUT; how many."""
    store = get_store()
    cutoff = timezone.now() - timedelta(seconds=settings.CRCR_ZOMBIE_TIMEOUT)
    timed_out = 0
    finished: list[tuple[str, str, int, str]] = []
    for job in store.in_progress_since(cutoff, BATCH):
        job_key = redis_keys.job(
            job.delivery_id, job.downstream_repo, job.run_id, job.run_attempt, job.job_name
        )
        now, tx = time.time(), uuid.uuid4().hex
        result = state.time_out(job_key, now=now, tx=tx)
        if result.result not in ("ok", "gone"):
            metrics.count(metrics.ZOMBIES, result="completed_meanwhile")
            continue  # it completed meanwhile
        started = result.since or job.updated_at.timestamp()
        key = RecordKey(
            job.downstream_repo, job.delivery_id, job.workflow_name, job.job_name, job.check_run_id
        )
        record = HudRecord(
            key,
            job.repo_display,
            status="completed",
            conclusion="timed_out",
            execution_time=round(max(0.0, now - started), 3),
        )
        try:
            store.upsert(record, now=timezone.now())
        except Exception:
            if result.result == "ok":
                state.compensate(job_key, tx)
            raise
        timed_out += 1
        metrics.count(metrics.ZOMBIES, result="timed_out")
        finished.append(
            (
                job.downstream_repo,
                job.run_id,
                job.run_attempt,
                f"{job.workflow_name}/{job.job_name}",
            )
        )
    at = timezone.now()
    check_runs.finish_timed_out(finished, now=at)
    check_runs.time_out_silent(now=at)
    if timed_out:
        logger.warning(
            "timed out %d jobs in progress for over %d s", timed_out, settings.CRCR_ZOMBIE_TIMEOUT
        )
    return timed_out
