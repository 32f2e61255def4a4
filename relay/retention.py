"""What the relay forgets, and when: the tables that only grow are pruned by the worker every
hour (relay/periodic.py) or by `manage.py prune` from cron.

- used replay keys, a day after their use: oidc.MAX_LIFETIME keeps every token shorter-lived;
- the callback audit, after CRCR_AUDIT_RETENTION_DAYS (0 keeps it for ever);
- envelopes forwarded to a remote HUD, a week after they were sent; the ones given up on, with
  the audit;
- finished task results, after two weeks (django-tasks-db's own command);
- the HUD's note of each accepted dispatch (hud.models.Dispatched), after 90 days: no HUD
  window reaches further back.

Deletes go in batches of BATCH rows, oldest first by primary key, so a large backlog never
holds one long lock. Deliveries and dispatches are kept: a re-run days later still needs
its dispatch.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.core.management import call_command
from django.db import models
from django.utils import timezone

from hud.models import Dispatched
from relay.models import CallbackAudit, HudForward, ReplayKey, WorkerHeartbeat

BATCH = 5000
REPLAY_KEYS_KEPT = timedelta(days=1)
FORWARDED_KEPT = timedelta(days=7)
TASK_RESULTS_KEPT_DAYS = 14
DISPATCHED_KEPT = timedelta(days=90)
HEARTBEATS_KEPT = timedelta(days=1)


def prune(now: datetime | None = None) -> dict[str, int]:
    """Delete what is past its retention; how many rows of each kind."""
    now = now or timezone.now()
    deleted = {
        "replay_keys": _delete(ReplayKey.objects.filter(used_at__lt=now - REPLAY_KEYS_KEPT)),
        "forwarded": _delete(
            HudForward.objects.filter(
                status=HudForward.Status.SENT, sent_at__lt=now - FORWARDED_KEPT
            )
        ),
        "dispatched": _delete(Dispatched.objects.filter(dispatched_at__lt=now - DISPATCHED_KEPT)),
        # a worker that stopped without removing its heartbeat (killed): a day is long enough
        # for /readyz to have shown it stale
        "heartbeats": _delete(WorkerHeartbeat.objects.filter(seen_at__lt=now - HEARTBEATS_KEPT)),
    }
    days = settings.CRCR_AUDIT_RETENTION_DAYS
    if days:
        cutoff = now - timedelta(days=days)
        deleted["audit"] = _delete(CallbackAudit.objects.filter(at__lt=cutoff))
        deleted["forwards_given_up"] = _delete(
            HudForward.objects.filter(status=HudForward.Status.FAILED, created_at__lt=cutoff)
        )
    call_command(
        "prune_db_task_results",
        min_age_days=TASK_RESULTS_KEPT_DAYS,
        queue_name="*",
        verbosity=0,
    )
    return deleted


def _delete(rows: "models.QuerySet[models.Model]") -> int:
    total = 0
    while ids := list(rows.order_by("pk").values_list("pk", flat=True)[:BATCH]):
        total += rows.filter(pk__in=ids).delete()[0]
    return total
