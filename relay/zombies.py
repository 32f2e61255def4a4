"""Jobs that reported in_progress and never completed (a runner died, a callback was lost).

After CRCR_ZOMBIE_TIMEOUT such a job is completed as `timed_out`, in Redis (so its state
machine is settled) and on its HUD record. A genuine `completed` arriving later still replaces
the `timed_out` (relay/state.py lets it). The database's in-progress records are the tracker:
they survive a Redis restart.
"""

import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from hud.models import JobRecord
from relay import redis_keys, state

logger = logging.getLogger(__name__)

BATCH = 500


def sweep() -> int:
    """Time out the jobs in progress for longer than CRCR_ZOMBIE_TIMEOUT; how many."""
    cutoff = timezone.now() - timedelta(seconds=settings.CRCR_ZOMBIE_TIMEOUT)
    stale = JobRecord.objects.filter(
        status="in_progress", source=JobRecord.Source.RELAY, updated_at__lt=cutoff
    ).order_by("updated_at")[:BATCH]
    timed_out = 0
    for record in stale:
        job_key = redis_keys.job(
            record.delivery_id,
            record.downstream_repo,
            record.run_id,
            record.run_attempt,
            record.job_name,
        )
        now, tx = time.time(), uuid.uuid4().hex
        result = state.time_out(job_key, now=now, tx=tx)
        if result.result not in ("ok", "gone"):
            continue  # it completed meanwhile
        started = result.since or record.updated_at.timestamp()
        try:
            with transaction.atomic():
                timed_out += JobRecord.objects.filter(pk=record.pk, status="in_progress").update(
                    status="completed",
                    conclusion="timed_out",
                    execution_time=round(max(0.0, now - started), 3),
                    updated_at=timezone.now(),
                )
        except Exception:
            if result.result == "ok":
                state.compensate(job_key, tx)
            raise
    if timed_out:
        logger.warning(
            "timed out %d jobs in progress for over %d s", timed_out, settings.CRCR_ZOMBIE_TIMEOUT
        )
    return timed_out
