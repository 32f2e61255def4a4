"""Periodic jobs the worker runs. Any number of workers may run; each job runs once per interval.

A worker takes a job's turn with one conditional UPDATE on its `PeriodicJob` row (the row is
the lock), so two workers never both run it. Django's tasks framework has no schedules of its
own; this is that schedule. (Cron calling the management commands is the alternative.)
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from relay.models import PeriodicJob

logger = logging.getLogger(__name__)


# Seconds between sends of the re-runs asked for on upstream PRs: someone has just clicked.
RERUN_INTERVAL = 2.0


@dataclass(frozen=True)
class Job:
    name: str
    interval: Callable[[], float]  # seconds; 0 turns the job off
    run: Callable[[], object]


def _sweep() -> object:
    from relay import fanout

    return fanout.sweep()


def _redeliver() -> object:
    from relay import redelivery

    if not (settings.GITHUB_APP_ID and settings.GITHUB_APP_PRIVATE_KEY):
        return "skipped: no GitHub App configured"
    return redelivery.redeliver_missed()


def _reruns() -> object:
    from relay.upstream_pr import reruns

    return reruns.send_due()


def _zombies() -> object:
    from relay import zombies

    return zombies.sweep()


def _check_runs() -> object:
    from relay.upstream_pr import check_runs

    return check_runs.send_due()


def _forward() -> object:
    from relay import hud_forward

    return hud_forward.forward_due()


def _comment() -> object:
    from relay.upstream_pr import comment

    if not (settings.GITHUB_APP_ID and settings.GITHUB_APP_PRIVATE_KEY):
        return "skipped: no GitHub App configured"
    return comment.send_due()


def _comments_here() -> float:
    # The comment reads the HUD, which chdb keeps in the web process only.
    return 1.0 if settings.CRCR_COMMENT_LEVELS and not _chdb() else 0


def _drain_clickhouse() -> object:
    from hud.storage import get_store

    drain = getattr(get_store(), "drain", None)
    return drain() if drain else "skipped"


def _chdb() -> bool:
    """The HUD is in chdb, which only the web process may open: not the worker's to read."""
    url = settings.HUD_CLICKHOUSE_URL or ""
    return settings.HUD_BACKEND == "clickhouse" and url.startswith("chdb:")


def _drains_here() -> float:
    # chdb lives in the web process, which drains before it reads; a server is drained here.
    return 1.0 if settings.HUD_BACKEND == "clickhouse" and not _chdb() else 0


def _prune() -> object:
    from relay import retention

    return retention.prune()


def _levels() -> object:
    from hud import levels

    return str(levels.evaluate())


def _sync_allowlist() -> object:
    from allowlist.sync import sync

    return sync(settings.CRCR_ALLOWLIST).plan.changes


JOBS: tuple[Job, ...] = (
    Job("dispatch_sweep", lambda: 5.0, _sweep),
    Job("upstream_reruns", lambda: RERUN_INTERVAL, _reruns),
    Job("zombie_sweep", lambda: 0 if _chdb() else 60.0, _zombies),
    Job("hud_forward", lambda: 1.0 if settings.HUD_FORWARD_URL else 0, _forward),
    Job("check_runs", lambda: 0.2, _check_runs),
    Job("hud_clickhouse_drain", _drains_here, _drain_clickhouse),
    Job("upstream_comment", _comments_here, _comment),
    Job("prune", lambda: 3600.0, _prune),
    Job("redeliver_missed", lambda: settings.CRCR_REDELIVERY_INTERVAL, _redeliver),
    Job("allowlist_sync", lambda: settings.CRCR_ALLOWLIST_SYNC_INTERVAL, _sync_allowlist),
    # It reads the HUD's store, which chdb keeps in the web process.
    Job("levels_evaluate", lambda: 0 if _chdb() else settings.CRCR_LEVELS_EVERY, _levels),
)


def take_turn(job: Job) -> bool:
    """True when this worker won the job's turn for the current interval."""
    interval = job.interval()
    if interval <= 0:
        return False
    now = timezone.now()
    PeriodicJob.objects.get_or_create(name=job.name)
    due = Q(last_started_at__isnull=True) | Q(
        last_started_at__lte=now - timedelta(seconds=interval)
    )
    return PeriodicJob.objects.filter(due, name=job.name).update(last_started_at=now) == 1


def run_due_jobs() -> None:
    # One read of every job's last start (an idle worker polls twice a second); only a job
    # due by it, or without a row yet, goes on to take its turn, which decides.
    now = timezone.now()
    started = dict(PeriodicJob.objects.values_list("name", "last_started_at"))
    for job in JOBS:
        last = started.get(job.name)
        if last is not None and last > now - timedelta(seconds=max(job.interval(), 0)):
            continue
        if not take_turn(job):
            continue
        error = ""
        try:
            result = job.run()
            logger.debug("periodic %s: %s", job.name, result)
        except Exception as exc:  # one job's failure must not stop the others or the worker
            logger.exception("periodic job %s failed", job.name)
            error = f"{type(exc).__name__}: {exc}"
        finished = timezone.now()
        PeriodicJob.objects.filter(name=job.name).update(
            last_finished_at=finished,
            last_error=error,
            **({} if error else {"last_succeeded_at": finished}),
        )
