"""Forwarding accepted records to a remote HUD (HUD_FORWARD_URL), from the database outbox.

The envelope is contract section 3's, sent with `x-hud-internal-bot: HUD_FORWARD_TOKEN`. A 2xx
is sent; another 4xx (but 429) is a rejection, kept as `failed` for inspection; anything else
is retried like a dispatch (CRCR_RETRY_FIRST doubling to CRCR_RETRY_CAP, full jitter) until
CRCR_DISPATCH_GIVE_UP. Rows are claimed with a lease, so several workers never send one twice.
"""

import logging
import random
from datetime import timedelta

import requests
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from crcr_site import sql
from relay.models import HudForward

logger = logging.getLogger(__name__)

BATCH = 50
LEASE = timedelta(seconds=60)
TIMEOUT = 10.0

_session = requests.Session()


def outbox_rows(envelope: dict[str, object]) -> list[sql.Row]:
    """The outbox row for an envelope when forwarding is on, for the callback's own write."""
    if not settings.HUD_FORWARD_URL:
        return []
    now = timezone.now()
    values = {"envelope": envelope, "created_at": now, "next_attempt_at": now}
    return [sql.Row(HudForward, values)]


def queue(envelope: dict[str, object]) -> None:
    """Add an envelope to the outbox (call inside the callback's transaction)."""
    for row in outbox_rows(envelope):
        sql.insert_row(row)


def forward_due() -> int:
    """Send what is due; how many were sent."""
    if not settings.HUD_FORWARD_URL:
        return 0
    now = timezone.now()
    due = Q(status=HudForward.Status.PENDING, next_attempt_at__lte=now) & (
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    ids = list(HudForward.objects.filter(due).order_by("pk").values_list("pk", flat=True)[:BATCH])
    HudForward.objects.filter(due, pk__in=ids).update(
        lease_until=now + LEASE, attempts=F("attempts") + 1
    )
    sent = 0
    for row in HudForward.objects.filter(pk__in=ids, lease_until=now + LEASE):
        sent += _send(row)
    return sent


def _send(row: HudForward) -> int:
    url = str(settings.HUD_FORWARD_URL)
    try:
        response = _session.post(
            url,
            json=row.envelope,
            timeout=TIMEOUT,
            headers={"x-hud-internal-bot": settings.HUD_FORWARD_TOKEN},
        )
        status, error = response.status_code, f"HTTP {response.status_code} {response.text[:200]}"
    except requests.RequestException as exc:
        status, error = 0, str(exc)
    now = timezone.now()
    if 200 <= status < 300:
        HudForward.objects.filter(pk=row.pk).update(
            status=HudForward.Status.SENT, sent_at=now, lease_until=None, last_error=""
        )
        return 1
    rejected = 400 <= status < 500 and status != 429
    ceiling = min(settings.CRCR_RETRY_CAP, settings.CRCR_RETRY_FIRST * 2 ** (row.attempts - 1))
    retry_at = now + timedelta(seconds=random.uniform(0, ceiling))  # noqa: S311 (jitter)
    gave_up = retry_at > row.created_at + timedelta(seconds=settings.CRCR_DISPATCH_GIVE_UP)
    failed = rejected or gave_up
    HudForward.objects.filter(pk=row.pk).update(
        status=HudForward.Status.FAILED if failed else HudForward.Status.PENDING,
        next_attempt_at=retry_at,
        lease_until=None,
        last_error=error[:2000],
    )
    logger.warning("forward %s to the HUD: %s%s", row.pk, error, " (given up)" if failed else "")
    return 0
