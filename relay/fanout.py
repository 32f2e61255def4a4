"""Fan-out: record every dispatch, then send them in parallel, each exactly once if we can.

1. `record` writes the delivery and one `pending` dispatch per participating repo in one
   transaction, before GitHub is called. A redelivery (same `X-GitHub-Delivery`) adds nothing
   for repos already sent to, and puts failed ones back to `pending`.
2. `claim` takes due dispatches with a lease, by one conditional UPDATE: a row is sent by whoever
   holds its lease, so the webhook's thread and the worker never both send it. A sender renews
   the lease when it starts the send (a row may wait in the pool's queue), and a lease lasts
   longer than one send can (CRCR_DISPATCH_LEASE, checked against GITHUB_TIMEOUT).
3. `send` writes the Redis DISPATCHED state (a callback may arrive before GitHub answers us),
   then POSTs, then records the answer at once: `sent`, or `pending` with the next attempt
   (full-jitter backoff from CRCR_RETRY_FIRST doubling to CRCR_RETRY_CAP, or GitHub's
   Retry-After), or `failed` (GitHub refused it, or CRCR_DISPATCH_GIVE_UP has passed).
4. The webhook waits up to CRCR_FANOUT_DEADLINE; what is not done by then, or must be tried
   again, is left `pending` and a task is queued for `manage.py worker`. A periodic sweep
   sends pending rows whose lease expired (a process died mid-send).

Every dispatch whose answer was recorded is sent exactly once; a process killed between GitHub's
answer and our record of it makes that one dispatch go twice (at least once overall).

Failure modes: Redis down means no DISPATCHED state, and a dispatch without it would have its
callbacks refused, so sending waits for Redis (deferred, nothing lost). The database down means
nothing can be recorded, so the webhook fails and GitHub marks the delivery failed; the
lost-webhook job asks for it again later (relay/redelivery.py).
"""

import json
import logging
import random
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from redis.exceptions import RedisError

from allowlist import lookup
from crcr_site.redis_connection import get_redis
from relay import dispatch_payload, dispatch_token, redis_keys
from relay.github import GitHubError, RateLimited, get_app
from relay.models import Delivery, Dispatch
from relay.webhook import UpstreamEvent

logger = logging.getLogger(__name__)

Status = Dispatch.Status
SWEEP_GRACE = timedelta(seconds=10)  # leave freshly due rows to their queued task
LOST = "lost"  # another sender took the row first: nothing was sent

POOL_PREFIX = "crcr-fanout"
_pool: ThreadPoolExecutor | None = None
_pool_guard = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """One sending pool per process, made on first use (after a server forks its workers)."""
    global _pool
    with _pool_guard:
        if _pool is None:
            _pool = ThreadPoolExecutor(settings.CRCR_FANOUT_THREADS, thread_name_prefix=POOL_PREFIX)
        return _pool


@dataclass
class Summary:
    """The webhook's answer, shaped like PyTorch's relay's: lists of {"repo": ...} objects.

    `dispatched` and `failed` (with "error") are PyTorch's keys; `queued` (sent in the
    background, with "reason") and `skipped` (with "reason") are ours.
    """

    dispatched: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    queued: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    deferred: str = ""

    def as_json(self) -> dict[str, Any]:
        def by_repo(items: list[dict[str, str]]) -> list[dict[str, str]]:
            return sorted(items, key=lambda item: item["repo"].casefold())

        body: dict[str, Any] = {
            "ok": True,
            "dispatched": by_repo(self.dispatched),
            "failed": by_repo(self.failed),
            "queued": by_repo(self.queued),
            "skipped": by_repo(self.skipped),
        }
        if self.deferred:
            body["deferred"] = self.deferred
        return body


def record(event: UpstreamEvent) -> Delivery:
    """The delivery and its dispatches, durably, before anything is sent."""
    now = timezone.now()
    status = Status.PENDING if settings.CRCR_DISPATCH_ENABLED else Status.SHADOW
    targets = lookup.repos_for_event(event.event)
    with transaction.atomic():
        delivery, created = Delivery.objects.get_or_create(
            delivery_id=event.delivery_id,
            defaults={
                "event": event.event,
                "action": event.action,
                "upstream_repo": event.repo,
                "pr_number": event.pr_number,
                "head_sha": event.head_sha,
                "ref": event.ref,
                "title": event.title,
                "author": event.author,
                "body": event.body,
            },
        )
        if not created:
            Delivery.objects.filter(pk=delivery.pk).update(times_received=F("times_received") + 1)
        Dispatch.objects.bulk_create(
            [
                Dispatch(
                    delivery=delivery,
                    repo=e.repo,
                    repo_key=e.key,
                    level=e.level,
                    status=status,
                    next_attempt_at=now,
                )
                for e in targets
            ],
            ignore_conflicts=True,
        )
        # A redelivery repairs a partial failure: what failed is tried again.
        delivery.dispatches.filter(status=Status.FAILED).update(
            status=Status.PENDING, next_attempt_at=now, attempts=0
        )
    return delivery


def claim(rows: "Q | None" = None, *, ids: list[int] | None = None) -> list[Dispatch]:
    """Take the due, unleased pending dispatches among `rows`/`ids` with a fresh lease."""
    now = timezone.now()
    owner = uuid.uuid4().hex
    due = Dispatch.objects.filter(status=Status.PENDING, next_attempt_at__lte=now).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    if rows is not None:
        due = due.filter(rows)
    if ids is not None:
        due = due.filter(id__in=ids)
    lease = timedelta(seconds=settings.CRCR_DISPATCH_LEASE)
    # The conditions are on the updated rows themselves, so of two concurrent claims on
    # PostgreSQL the second re-checks them after the first commits and takes nothing.
    due.update(lease_owner=owner, lease_until=now + lease)
    return list(Dispatch.objects.filter(lease_owner=owner).select_related("delivery"))


def start_attempt(row: Dispatch) -> bool:
    """Renew our lease as the send starts; False when another sender has taken the row."""
    lease = timedelta(seconds=settings.CRCR_DISPATCH_LEASE)
    taken = Dispatch.objects.filter(
        pk=row.pk, lease_owner=row.lease_owner, status=Status.PENDING
    ).update(lease_until=timezone.now() + lease, attempts=F("attempts") + 1)
    row.attempts += 1
    return taken == 1


def next_attempt(row: Dispatch, now: datetime, retry_after: float = 0.0) -> datetime | None:
    """When to try again (full jitter), or None when CRCR_DISPATCH_GIVE_UP has passed."""
    ceiling = min(
        settings.CRCR_RETRY_CAP, settings.CRCR_RETRY_FIRST * 2 ** max(row.attempts - 1, 0)
    )
    delay = max(random.uniform(0, ceiling), retry_after)  # noqa: S311 (jitter, not secrets)
    when = now + timedelta(seconds=delay)
    if when > row.created_at + timedelta(seconds=settings.CRCR_DISPATCH_GIVE_UP):
        return None
    return when


def _finish(row: Dispatch, status: str, error: str = "", retry_after: float = 0.0) -> str:
    now = timezone.now()
    values: dict[str, Any] = {"status": status, "last_error": error[:2000], "lease_until": None}
    if status == Status.SENT:
        values["sent_at"] = now
    elif status == Status.PENDING:
        when = next_attempt(row, now, retry_after)
        if when is None:
            values["status"] = status = Status.FAILED
            values["last_error"] = f"gave up after {settings.CRCR_DISPATCH_GIVE_UP} s: {error}"
        values["next_attempt_at"] = when
    Dispatch.objects.filter(pk=row.pk).update(**values)
    level = logging.INFO if status == Status.SENT else logging.WARNING
    logger.log(level, "dispatch %s -> %s: %s %s", row.delivery.delivery_id, row.repo, status, error)
    return status


def send(row: Dispatch, payload: dict[str, Any]) -> str:
    """Send one claimed dispatch and record the answer; returns the new status."""
    delivery = row.delivery
    try:
        if not start_attempt(row):
            return LOST
        try:
            get_redis().set(
                redis_keys.dispatched(delivery.delivery_id, row.repo_key),
                json.dumps({"state": "DISPATCHED", "timestamp": time.time()}),
                ex=settings.CRCR_DISPATCH_TTL,
            )
        except RedisError as exc:
            return _finish(row, Status.PENDING, f"deferred, Redis unavailable: {exc}")
        token = dispatch_token.sign(
            dispatch_token.DispatchClaims(
                delivery.delivery_id, row.repo_key, delivery.pr_number, delivery.head_sha
            )
        )
        try:
            client_payload, truncated = dispatch_payload.build(
                event_type=delivery.event,
                delivery_id=delivery.delivery_id,
                payload=payload,
                token=token,
            )
        except dispatch_payload.PayloadTooLarge as exc:
            return _finish(row, Status.FAILED, str(exc))
        if truncated and not row.truncated:
            Dispatch.objects.filter(pk=row.pk).update(truncated=True)
        try:
            get_app().dispatch(row.repo, delivery.event, client_payload)
        except RateLimited as exc:
            return _finish(row, Status.PENDING, str(exc), retry_after=exc.retry_after)
        except GitHubError as exc:
            return _finish(row, Status.PENDING if exc.transient else Status.FAILED, str(exc))
        return _finish(row, Status.SENT)
    finally:
        if threading.current_thread().name.startswith(POOL_PREFIX):
            connection.close()  # pool threads must not each keep a connection open


def send_all(
    rows: list[Dispatch], payloads: dict[int, dict[str, Any]], deadline: float | None
) -> dict[int, str]:
    """Send in parallel; after `deadline` seconds, unstarted rows are released to the worker."""
    futures: dict[Future[str], Dispatch] = {
        pool().submit(send, row, payloads[row.delivery_id]): row for row in rows
    }
    done, not_done = wait(futures, timeout=deadline)
    late = [futures[f].pk for f in not_done if f.cancel()]
    if late:
        Dispatch.objects.filter(pk__in=late).update(
            lease_until=None, next_attempt_at=timezone.now()
        )
    return {futures[f].pk: f.result() for f in done}


def schedule_ids(ids: list[int]) -> None:
    schedule(Q(pk__in=ids))


def schedule(rows: "Q") -> None:
    """Queue a worker task for the pending dispatches among `rows`, due at the earliest."""
    from relay.tasks import send_dispatches

    pending = list(
        Dispatch.objects.filter(rows, status=Status.PENDING).values_list("pk", "next_attempt_at")
    )
    if not pending:
        return
    when = min(at or timezone.now() for _, at in pending)
    try:
        send_dispatches.using(run_after=when).enqueue([pk for pk, _ in pending])
    except Exception:  # the periodic sweep picks them up instead
        logger.exception("could not queue the retry of %d dispatches", len(pending))


def redis_answers() -> bool:
    try:
        return bool(get_redis().ping())
    except RedisError:
        return False


def fan_out(event: UpstreamEvent) -> Summary:
    """Record, send within the deadline, queue the rest; the webhook's answer."""
    delivery = record(event)
    mine = Q(delivery=delivery)
    outcomes: dict[int, str] = {}
    deferred = ""
    if not settings.CRCR_DISPATCH_ENABLED:
        deferred = "shadow mode (CRCR_DISPATCH_ENABLED=false): recorded, not sent"
    elif not redis_answers():
        retry_at = timezone.now() + timedelta(seconds=settings.CRCR_RETRY_FIRST)
        Dispatch.objects.filter(mine, status=Status.PENDING).update(next_attempt_at=retry_at)
        deferred = "Redis unavailable: every dispatch waits for it (nothing lost)"
    else:
        claimed = claim(mine)
        outcomes = send_all(claimed, {delivery.pk: event.payload}, settings.CRCR_FANOUT_DEADLINE)
    schedule(mine)
    return summarize(delivery, outcomes, deferred)


def summarize(delivery: Delivery, outcomes: dict[int, str], deferred: str) -> Summary:
    """Where each of the delivery's dispatches stands; `outcomes`: what this request sent."""
    summary = Summary(deferred=deferred)
    rows = delivery.dispatches.values_list("pk", "repo", "status", "last_error")
    for pk, repo, status, error in rows:
        if status == Status.SENT and outcomes.get(pk) == Status.SENT:
            summary.dispatched.append({"repo": repo})
        elif status == Status.SENT:
            summary.skipped.append({"repo": repo, "reason": "already dispatched"})
        elif status == Status.SHADOW:
            summary.skipped.append({"repo": repo, "reason": "shadow mode"})
        elif status == Status.FAILED:
            summary.failed.append({"repo": repo, "error": error})
        else:
            summary.queued.append({"repo": repo, "reason": error or "sending in the background"})
    return summary


def retry(ids: list[int]) -> dict[str, int]:
    """The worker's send: claim what is due among `ids`, send it all, queue what must wait."""
    claimed = claim(ids=ids)
    payloads: dict[int, dict[str, Any]] = {}
    for row in claimed:
        if row.delivery_id not in payloads:
            payloads[row.delivery_id] = json.loads(row.delivery.body)
    outcomes = send_all(claimed, payloads, deadline=None)
    schedule_ids(ids)  # what is still pending among them, claimed now or not yet due
    counts: dict[str, int] = {}
    for status in outcomes.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def sweep() -> dict[str, int]:
    """Pending dispatches nobody is sending (a process died mid-send, a task was lost)."""
    now = timezone.now()
    stale = Q(next_attempt_at__lte=now - SWEEP_GRACE) | Q(lease_until__lt=now)
    ids = list(
        Dispatch.objects.filter(stale, status=Status.PENDING)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:500]
    )
    return retry(ids=ids) if ids else {}
