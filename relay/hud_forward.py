"""Forwarding accepted records to a remote HUD (HUD_FORWARD_URL), from the database outbox.

The envelope is contract section 3's, sent with `x-hud-internal-bot: HUD_FORWARD_TOKEN`. A 2xx
is sent; another 4xx (but 429) is a rejection, kept as `failed` for inspection; anything else
is retried like a dispatch (relay/leases.py: capped, jittered backoff) until
CRCR_DISPATCH_GIVE_UP.

Rows are claimed with a lease of CRCR_DISPATCH_LEASE seconds, as the fan-out claims dispatches,
so several workers never send one twice: a worker sends its batch one row at a time only while
the lease has time left for a send (each send's timeout is cut to what is left) and hands the
rest back unattempted.
"""

import logging
import time
import uuid
from datetime import timedelta

import requests
import urllib3
from django.conf import settings
from django.utils import timezone

from crcr_site import sql
from relay.models import HudForward

logger = logging.getLogger(__name__)

BATCH = 50
TIMEOUT = 10.0
MIN_SEND = 1.0  # seconds of lease a send needs at least; with less, the rest is handed back
MAX_ANSWER = 64 * 1024  # bytes of the remote HUD's answer read at most

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
    lease = float(settings.CRCR_DISPATCH_LEASE)
    deadline = time.monotonic() + lease
    owner = uuid.uuid4().hex
    rows = HudForward.objects.claim_due(
        owner=owner, n=BATCH, lease=timedelta(seconds=lease), order=("pk",)
    )
    sent = 0
    for n, row in enumerate(rows):
        left = deadline - time.monotonic()
        if left < MIN_SEND:  # the lease would end mid-send: another worker may take these
            HudForward.objects.filter(pk__in=[later.pk for later in rows[n:]]).hand_back(
                owner=owner
            )
            break
        sent += _send(row, timeout=min(TIMEOUT, left))
    return sent


def _send(row: HudForward, timeout: float) -> int:
    url = str(settings.HUD_FORWARD_URL)
    deadline = time.monotonic() + timeout
    try:
        with _session.post(
            url,
            json=row.envelope,
            timeout=timeout,  # each socket operation's: the answer's body is read to `deadline`
            headers={"x-hud-internal-bot": settings.HUD_FORWARD_TOKEN},
            stream=True,
        ) as response:
            body = b""
            while chunk := response.raw.read1(4096, decode_content=True):  # what has come
                body += chunk
                if time.monotonic() > deadline or len(body) > MAX_ANSWER:
                    raise requests.Timeout("the remote HUD's answer outlasted the send's time")
        status = response.status_code
        error = f"HTTP {status} {body[:200].decode(errors='replace')}"
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:  # raw reads: urllib3
        status, error = 0, str(exc)
    if 200 <= status < 300:
        HudForward.objects.filter(pk=row.pk).mark_sent(now=timezone.now())
        return 1
    if 400 <= status < 500 and status != 429:  # rejected: kept for inspection
        row.fail(error)
    else:
        row.retry_later(error, now=timezone.now())
    failed = row.status == HudForward.Status.FAILED
    logger.warning("forward %s to the HUD: %s%s", row.pk, error, " (given up)" if failed else "")
    return 0
