"""GET /readyz: is the whole relay able to do its work, the worker side included?

/healthz answers for this process (its database and Redis): what a load balancer asks. /readyz
answers for the deployment, for monitors and for humans: every dependency (database, Redis,
the task backend, the HUD's store), each `manage.py worker`'s last heartbeat, and each periodic
job's last success. It is 503 when a dependency is down or a periodic job is overdue (it has
not succeeded for its interval plus CRCR_PERIODIC_GRACE seconds, or never has): a sweeper
that stopped, or fails on every run, shows here. A worker's stale heartbeat is reported; it is
the periodic jobs, which any worker may run, that decide.

Every check runs in its own savepoint and catches its own failure: /readyz never answers 500.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from crcr_site import redis_connection
from crcr_site.errors import json_methods


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    redis_connection.ping()


def _tasks() -> None:
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.filter(status="READY").exists()


def _hud() -> None:
    from hud.storage import get_store

    get_store().newest()


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "redis": _redis,
    "tasks": _tasks,
    "hud": _hud,
}


def dependencies() -> dict[str, str]:
    """Each dependency: "ok", or what went wrong (its error's type)."""
    from hud.storage import StoreUnavailable

    found = {}
    for name, check in CHECKS.items():
        try:
            with transaction.atomic():  # a failed statement must not spoil the next check's
                check()
            found[name] = "ok"
        except (DatabaseError, *redis_connection.REDIS_ERRORS, StoreUnavailable, OSError) as exc:
            found[name] = f"unavailable: {type(exc).__name__}"
    return found


@dataclass(frozen=True)
class PeriodicState:
    name: str
    every: float  # seconds; 0: off here
    last_success: datetime | None
    last_error: str
    state: str  # ok, overdue, never, off

    def as_json(self, now: datetime) -> dict[str, Any]:
        age = (now - self.last_success).total_seconds() if self.last_success else None
        return {
            "name": self.name,
            "every_seconds": self.every,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "age_seconds": None if age is None else round(age, 1),
            "last_error": self.last_error,
            "state": self.state,
        }


def periodic(now: datetime) -> list[PeriodicState]:
    """Each periodic job this deployment runs (relay/periodic.py JOBS), judged by its last
    success."""
    from relay.models import PeriodicJob
    from relay.periodic import JOBS

    rows = {row.name: row for row in PeriodicJob.objects.all()}
    states = []
    for job in JOBS:
        every = job.interval()
        row = rows.get(job.name)
        success = row.last_succeeded_at if row else None
        if every <= 0:
            state = "off"
        elif success is None:
            state = "never"
        elif (now - success).total_seconds() > every + settings.CRCR_PERIODIC_GRACE:
            state = "overdue"
        else:
            state = "ok"
        states.append(PeriodicState(job.name, every, success, row.last_error if row else "", state))
    return states


def workers(now: datetime) -> list[dict[str, Any]]:
    from relay.models import WorkerHeartbeat

    found = []
    for beat in WorkerHeartbeat.objects.order_by("-seen_at")[:50]:
        age = (now - beat.seen_at).total_seconds()
        found.append(
            {
                "id": beat.worker_id,
                "host": beat.host,
                "pid": beat.pid,
                "started_at": beat.started_at.isoformat(),
                "seen_at": beat.seen_at.isoformat(),
                "age_seconds": round(age, 1),
                "state": "stale" if age > settings.CRCR_WORKER_STALE else "ok",
            }
        )
    return found


def report(now: datetime | None = None) -> tuple[bool, dict[str, Any]]:
    """(ready, the JSON body)."""
    now = now or timezone.now()
    parts = dependencies()
    problems = [f"{name} {state}" for name, state in parts.items() if state != "ok"]
    jobs: list[PeriodicState] = []
    beats: list[dict[str, Any]] = []
    if parts["database"] == "ok":  # both read the database
        jobs = periodic(now)
        beats = workers(now)
        for job in jobs:
            if job.state == "overdue":
                problems.append(f"periodic job {job.name} overdue (every {job.every:g} s)")
            elif job.state == "never":
                problems.append(f"periodic job {job.name} has never succeeded")
        if not any(beat["state"] == "ok" for beat in beats):
            problems.append("no worker heartbeat")
    ready = not any(state != "ok" for state in parts.values()) and not any(
        job.state in ("overdue", "never") for job in jobs
    )
    body = {
        "ok": ready,
        "dependencies": parts,
        "workers": beats,
        "periodic": [job.as_json(now) for job in jobs],
        "problems": problems,
    }
    return ready, body


@json_methods("GET", "HEAD")
def readyz(request: HttpRequest) -> JsonResponse:
    ready, body = report()
    return JsonResponse(body, status=200 if ready else 503)
