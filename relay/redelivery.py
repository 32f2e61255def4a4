"""Lost webhooks: GitHub never retries a delivery our server failed or never received.

Periodically list the App's recent deliveries and ask GitHub to redeliver each one we would
have dispatched, that failed on every attempt, and that we have no record of. GitHub keeps
deliveries for 3 days, which bounds how far back we look. One delivery is asked for at most
once an hour (a Redis marker), so a relay that keeps failing is not asked to redeliver in a loop.

Failure modes: GitHub unavailable or rate limiting, or Redis down: the run stops and the next
one tries again (nothing is lost that the next run cannot find).
"""

import logging
from datetime import timedelta

from django.utils import timezone
from redis.exceptions import RedisError

from crcr_site.redis_connection import get_redis
from relay import redis_keys
from relay.github import HookDelivery, get_app
from relay.models import Delivery
from relay.webhook import is_dispatched

logger = logging.getLogger(__name__)

WINDOW = timedelta(days=3)
ASK_AGAIN_AFTER = 3600


def missed_deliveries() -> list[HookDelivery]:
    """Failed deliveries of dispatched events, within GitHub's window, that we never recorded."""
    since = timezone.now() - WINDOW
    succeeded: set[str] = set()
    failed: dict[str, HookDelivery] = {}
    for item in get_app().hook_deliveries():
        if item.delivered_at < since:
            break  # newest first: the rest are older still
        if not is_dispatched(item.event, item.action):
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


def redeliver_missed() -> list[str]:
    """Ask GitHub to redeliver what we missed; the guids asked for."""
    asked = []
    for item in missed_deliveries():
        try:
            first_time = get_redis().set(
                redis_keys.redelivery(item.guid), "1", nx=True, ex=ASK_AGAIN_AFTER
            )
        except RedisError as exc:
            logger.warning("lost-webhook check stopped: Redis unavailable (%s)", exc)
            break
        if first_time:
            get_app().redeliver(item.id)
            logger.info("asked GitHub to redeliver %s (%s.%s)", item.guid, item.event, item.action)
            asked.append(item.guid)
    return asked
