"""Background sending on Django's tasks framework (database backend), run by `manage.py worker`.

What the fan-out could not send by the webhook's deadline, or must try again, is queued here
(`schedule`): one task for a set of dispatches, due when the earliest of them is.
"""

import logging

from django.db.models import Q
from django.tasks import task
from django.utils import timezone

from relay import sending
from relay.models import Dispatch

logger = logging.getLogger(__name__)


@task
def send_dispatches(dispatch_ids: list[int]) -> dict[str, int]:
    """Send the due pending dispatches among these ids; queues itself again for what must wait."""
    counts = sending.send_counted(dispatch_ids)
    schedule(Q(pk__in=dispatch_ids))  # what is still pending, claimed now or not yet due
    return counts


def schedule(rows: Q) -> None:
    """Queue a worker task for the pending dispatches among `rows`, due at the earliest."""
    pending = list(
        Dispatch.objects.filter(rows, status=Dispatch.Status.PENDING).values_list(
            "pk", "next_attempt_at", "lease_until"
        )
    )
    if not pending:
        return
    now = timezone.now()
    # A row being sent right now is due again only when its lease ends (if its sender dies).
    when = min(max(at or now, lease or now) for _, at, lease in pending)
    try:
        send_dispatches.using(run_after=when).enqueue([pk for pk, _, _ in pending])
    except Exception:  # the periodic sweep picks them up instead
        logger.exception("could not queue the retry of %d dispatches", len(pending))
