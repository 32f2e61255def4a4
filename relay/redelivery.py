"""Lost webhooks: GitHub never retries a delivery our server failed or never received.

Periodically list the App's recent deliveries and ask GitHub to redeliver each one we would
have handled (a dispatch, a label, a re-run), that failed on every attempt, and that we have
no record of. GitHub keeps
deliveries for 3 days, which bounds how far back the first check looks; after a complete
check, the next reads back only to when that one started (less OVERLAP, for entries listed
late), so a busy App's three days of deliveries are not paged through every few minutes. A
redelivery that fails is a new entry, so it is seen again: a redelivery that reached a relay
still down (restarting, say) is asked for again a minute later, then after two, four... up to
once an hour (a Redis marker whose life doubles with each ask, set only once GitHub took the
request), so a relay that keeps failing is not asked to redeliver in a loop.

Failure modes: GitHub unavailable or rate limiting, or Redis down: the run stops and the next
one tries again (nothing is lost that the next run cannot find).
"""

import logging
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from crcr_site.redis_connection import REDIS_ERRORS, get_redis
from relay import redis_keys
from relay.github import HookDelivery, get_app
from relay.models import Delivery
from relay.webhook import is_handled

logger = logging.getLogger(__name__)

WINDOW = timedelta(days=3)
OVERLAP = timedelta(minutes=10)
ASK_AGAIN_FIRST = 60  # seconds before a delivery asked for may be asked for again...
ASK_AGAIN_AFTER = 3600  # ...doubling with each ask, up to this


def missed_deliveries(since: datetime | None = None) -> list[HookDelivery]:
    """Failed deliveries of handled events, delivered since `since` (at most GitHub's
    window), that we never recorded."""
    floor = timezone.now() - WINDOW
    since = floor if since is None else max(since, floor)
    succeeded: set[str] = set()
    failed: dict[str, HookDelivery] = {}
    for item in get_app().hook_deliveries():
        if item.delivered_at < since:
            break  # newest first: the rest are older still
        if not is_handled(item.event, item.action):
            continue
        if item.succeeded:
            succeeded.add(item.guid)
        else:
            failed.setdefault(item.guid, item)
    candidates = {guid: item for guid, item in failed.items() if guid not in succeeded}
    recorded = set(
        Delivery.objects.filter(delivery_id__in=candidates).values_list("delivery_id", flat=True)
    )
    return [item for guid, item in candidates.items() if guid not in recorded]


def _may_ask(guid: str) -> bool:
    """Whether `guid` may be asked for now; if so, the wait before the next ask begins (the
    marker's SET NX decides; the count only sets how long it lives)."""
    client = get_redis()
    asks = int(client.get(redis_keys.redelivery_asks(guid)) or 0)
    wait = min(ASK_AGAIN_AFTER, ASK_AGAIN_FIRST * 2 ** min(asks, 16))
    if not client.set(redis_keys.redelivery(guid), "1", nx=True, ex=wait):
        return False
    with client.pipeline(transaction=False) as pipe:
        pipe.incr(redis_keys.redelivery_asks(guid))
        pipe.expire(redis_keys.redelivery_asks(guid), int(WINDOW.total_seconds()))
        pipe.execute()
    return True


def redeliver_missed() -> list[str]:
    """Ask GitHub to redeliver what we missed; the guids asked for."""
    started = timezone.now()
    asked = []
    try:
        checked = get_redis().get(redis_keys.REDELIVERY_CHECKED)
        since = None if checked is None else datetime.fromtimestamp(float(checked), UTC) - OVERLAP
        for item in missed_deliveries(since):
            if _may_ask(item.guid):
                try:
                    get_app().redeliver(item.id)
                except Exception:
                    # Not asked after all: the next run asks again (not in an hour).
                    get_redis().delete(redis_keys.redelivery(item.guid))
                    raise
                logger.info(
                    "asked GitHub to redeliver %s (%s.%s)", item.guid, item.event, item.action
                )
                asked.append(item.guid)
        # Complete: the next check need not read further back than this one's start.
        get_redis().set(
            redis_keys.REDELIVERY_CHECKED, started.timestamp(), ex=int(WINDOW.total_seconds())
        )
    except REDIS_ERRORS as exc:
        logger.warning("lost-webhook check stopped: Redis unavailable (%s)", exc)
    return asked
