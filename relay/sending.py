"""Sending dispatches: claim due ones with a lease, POST them in parallel, record each answer.

1. `claim` takes due dispatches with a lease (relay/leases.py): a row is sent by whoever holds
   its lease, so the webhook's thread and the worker never both send it. Rows are claimed only
   when a sending thread is free for each (a slot), and a lease lasts longer than one send can
   (CRCR_DISPATCH_LEASE, checked against GITHUB_TIMEOUT by crcr.E006).
2. `send` writes the Redis DISPATCHED state (a callback may arrive before GitHub answers us),
   then POSTs, then records the answer at once: `sent`, or `pending` with the next attempt
   (leases.backoff, or GitHub's Retry-After), or `failed` (GitHub refused it, or
   CRCR_DISPATCH_GIVE_UP has passed).

Redis down means no DISPATCHED state, and a dispatch without it would have its callbacks
refused, so its sending waits for Redis (deferred, nothing lost).
"""

import functools
import json
import logging
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from crcr_site import log_context, metrics
from crcr_site.redis_connection import REDIS_ERRORS, get_redis
from hud.models import Dispatched
from relay import dispatch_payload, dispatch_token, redis_keys, state
from relay.github import GitHubError, RateLimited, get_app
from relay.models import Delivery, Dispatch

logger = logging.getLogger(__name__)

Status = Dispatch.Status

_pool: ThreadPoolExecutor | None = None
_slots = threading.BoundedSemaphore(1)
_pool_guard = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """One sending pool per process, made on first use (after a server forks its workers).

    Its CRCR_FANOUT_THREADS threads are handed out as slots (`_slots`): a row is claimed only
    with a slot in hand, so no claimed row waits in the pool's queue.
    """
    global _pool, _slots
    with _pool_guard:
        if _pool is None:
            _slots = threading.BoundedSemaphore(settings.CRCR_FANOUT_THREADS)
            _pool = ThreadPoolExecutor(
                settings.CRCR_FANOUT_THREADS, thread_name_prefix="crcr-fanout"
            )
        return _pool


def claim(scope: Q, limit: int, known_deliveries: tuple[Delivery, ...] = ()) -> list[Dispatch]:
    """Take up to `limit` due, unleased pending dispatches in `scope` with a fresh lease."""
    lease = timedelta(seconds=settings.CRCR_DISPATCH_LEASE)
    rows = Dispatch.objects.filter(scope).claim_due(owner=uuid.uuid4().hex, n=limit, lease=lease)
    # One Delivery object per delivery, not per row (its body is the whole webhook).
    deliveries = {known.pk: known for known in known_deliveries}
    missing = {row.delivery_id for row in rows} - deliveries.keys()
    if missing:
        deliveries |= Delivery.objects.in_bulk(missing)
    for row in rows:
        row.delivery = deliveries[row.delivery_id]
    return rows


@dataclass(frozen=True)
class Outcome:
    status: str  # SENT, PENDING (try again later) or FAILED
    error: str = ""
    retry_after: float = 0.0
    truncated: bool = False  # the payload was slimmed to fit GitHub's limit


def record_outcomes(results: list[tuple[Dispatch, Outcome]]) -> None:
    """Write what GitHub answered: sent ones in one UPDATE, the others one by one."""
    now = timezone.now()
    for truncated in (False, True):
        sent = [
            row.pk
            for row, outcome in results
            if outcome.status == Status.SENT and outcome.truncated == truncated
        ]
        if sent:
            Dispatch.objects.filter(pk__in=sent).mark_sent(now=now, truncated=truncated)
    _tell_the_hud([row for row, outcome in results if outcome.status == Status.SENT], now)
    for row, outcome in results:
        if outcome.status == Status.FAILED:
            row.fail(outcome.error, truncated=outcome.truncated)
        elif outcome.status == Status.PENDING:
            row.retry_later(
                outcome.error,
                now=now,
                retry_after=outcome.retry_after,
                truncated=outcome.truncated,
            )
        _counted(row, outcome, now)
        level = logging.INFO if outcome.status == Status.SENT else logging.WARNING
        logger.log(
            level,
            "dispatch %s -> %s: %s %s",
            row.delivery.delivery_id,
            row.repo,
            outcome.status,
            outcome.error,
            extra={"delivery_id": row.delivery.delivery_id, "repo": row.repo},
        )


def _counted(row: Dispatch, outcome: Outcome, now: datetime) -> None:
    """crcr_dispatches_total by outcome and attempt (4+ together), and for a sent one the time
    from its delivery's arrival."""
    attempt = str(row.attempts) if row.attempts < 4 else "4+"
    names: dict[str, str] = {Status.SENT: "sent", Status.PENDING: "retry", Status.FAILED: "failed"}
    metrics.count(metrics.DISPATCHES, outcome=names.get(outcome.status, "other"), attempt=attempt)
    if outcome.status == Status.SENT:
        lag = (now - row.delivery.received_at).total_seconds()
        metrics.observe(metrics.DISPATCH_LAG, max(lag, 0.0))


# A closed PR is dispatched so downstream can stop its runs; no run answers it.
NO_ANSWER_EXPECTED = {("pull_request", "closed")}


def _tell_the_hud(sent: list[Dispatch], now: datetime) -> None:
    """The HUD's own row for each accepted dispatch that a run should answer (one INSERT), so
    that a downstream that never calls back shows as silent (hud.models.Dispatched)."""
    rows = [
        Dispatched(
            repo=row.repo,
            repo_key=row.repo_key,
            upstream_repo=row.delivery.upstream_repo,
            event_type=row.delivery.event,
            pr_number=row.delivery.pr_number or 0,
            head_sha=row.delivery.head_sha[:100],
            delivery_id=row.delivery.delivery_id,
            dispatched_at=now,
        )
        for row in sent
        if (row.delivery.event, row.delivery.action) not in NO_ANSWER_EXPECTED
    ]
    if rows:
        Dispatched.objects.bulk_create(rows, ignore_conflicts=True)


def prepare(delivery: Delivery, payload: dict[str, Any]) -> "dispatch_payload.Prepared | str":
    """The delivery's client_payload, serialised once for all its repos; or why it cannot go."""
    try:
        return dispatch_payload.prepare(
            event_type=delivery.event, delivery_id=delivery.delivery_id, payload=payload
        )
    except dispatch_payload.PayloadTooLarge as exc:
        return str(exc)


def post(row: Dispatch, prepared: "dispatch_payload.Prepared | str") -> Outcome:
    """POST one dispatch to GitHub (runs in a pool thread: HTTP only, no database)."""
    log_context.bind(delivery_id=row.delivery.delivery_id, repo=row.repo)
    try:
        if isinstance(prepared, str):
            return Outcome(Status.FAILED, prepared)
        return _post(row, prepared)
    except Exception as exc:  # a bug or a surprise must not lose the row: try again later
        logger.exception("dispatch to %s failed unexpectedly", row.repo)
        return Outcome(Status.PENDING, f"unexpected error: {exc!r}")
    finally:
        give_back_slots(1)


def _post(row: Dispatch, prepared: dispatch_payload.Prepared) -> Outcome:
    delivery, truncated = row.delivery, prepared.truncated
    claims = dispatch_token.DispatchClaims(
        delivery.delivery_id, row.repo_key, delivery.pr_number, delivery.head_sha
    )
    try:
        body = prepared.request_body(delivery.event, dispatch_token.sign(claims))
        get_app().dispatch(row.repo, body)
    except dispatch_payload.PayloadTooLarge as exc:
        return Outcome(Status.FAILED, str(exc))
    except RateLimited as exc:
        return Outcome(Status.PENDING, str(exc), exc.retry_after, truncated)
    except GitHubError as exc:
        status = Status.PENDING if exc.transient else Status.FAILED
        return Outcome(status, str(exc), truncated=truncated)
    return Outcome(Status.SENT, truncated=truncated)


def mark_dispatched(rows: list[Dispatch]) -> str:
    """The Redis DISPATCHED state of each row, in one round trip; '' or why it failed."""
    try:
        with get_redis().pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.set(
                    redis_keys.dispatched(row.delivery.delivery_id, row.repo_key),
                    state.dispatched_state(time.time(), state.facts_of(row.delivery)),
                    ex=settings.CRCR_DISPATCH_TTL,
                )
            pipe.execute()
    except REDIS_ERRORS as exc:
        return f"deferred, Redis unavailable: {exc}"
    return ""


class Payloads(dict[int, "dispatch_payload.Prepared | str"]):
    """Each delivery's prepared payload, made on first need from its recorded body; and the
    Delivery objects the caller already holds (so claiming need not load them again)."""

    def __init__(self, *args: Any, deliveries: tuple[Delivery, ...] = ()) -> None:
        super().__init__(*args)
        self.deliveries = deliveries

    def for_row(self, row: Dispatch) -> "dispatch_payload.Prepared | str":
        if row.delivery_id not in self:
            self[row.delivery_id] = prepare(row.delivery, json.loads(row.delivery.body))
        return self[row.delivery_id]


def take_slots(wanted: int, *, block: float) -> int:
    """Up to `wanted` free sending slots; waits up to `block` seconds for the first one."""
    pool()  # makes the slots on first use
    taken = 0
    if block > 0 and wanted > 0:
        taken = int(_slots.acquire(timeout=block))
        if not taken:
            return 0
    while taken < wanted and _slots.acquire(blocking=False):
        taken += 1
    return taken


def give_back_slots(n: int) -> None:
    for _ in range(n):
        _slots.release()


def send(scope: Q, prepared: Payloads, deadline: float | None) -> dict[int, str]:
    """Claim and send the due dispatches in `scope`; returns the status each one reached.

    Rows are claimed only as sending slots free up, so every claimed row starts at once and
    its lease (longer than the slowest send) holds until it is recorded. At the deadline the
    webhook answers; sends still in flight record their own outcome when they finish.
    """
    end = None if deadline is None else time.monotonic() + deadline
    outcomes: dict[int, str] = {}
    in_flight: dict[Future[Outcome], Dispatch] = {}
    exhausted = False  # a claim found fewer due rows than it had slots for: none are left
    try:
        while True:
            left = 1.0 if end is None else max(0.0, end - time.monotonic())
            block = 0 if in_flight else min(left, 1.0)
            slots = 0 if exhausted else take_slots(settings.CRCR_FANOUT_THREADS, block=block)
            if slots:
                launched = _launch(scope, prepared, slots, in_flight)
                outcomes.update(launched.outcomes)
                exhausted = launched.claimed < slots
            if not in_flight or (end is not None and time.monotonic() >= end):
                break
            done, _ = wait(
                in_flight,
                timeout=None if end is None else max(0.0, end - time.monotonic()),
                return_when=FIRST_COMPLETED,
            )
            results = [(in_flight.pop(future), future.result()) for future in done]
            record_outcomes(results)
            outcomes.update((row.pk, outcome.status) for row, outcome in results)
    finally:
        # Whatever is still in flight (the deadline passed, or this thread failed) records
        # its own outcome when GitHub answers.
        for future, row in in_flight.items():
            future.add_done_callback(functools.partial(_record_late, row))
    return outcomes


@dataclass(frozen=True)
class Launched:
    claimed: int
    outcomes: dict[int, str]  # of rows that could not even be started


def _launch(
    scope: Q, prepared: Payloads, slots: int, in_flight: "dict[Future[Outcome], Dispatch]"
) -> Launched:
    """Claim up to `slots` rows and start sending them; every slot not handed on is released."""
    handed = 0
    try:
        rows = claim(scope, slots, prepared.deliveries)
        problem = mark_dispatched(rows) if rows else ""
        if problem:
            record_outcomes([(row, Outcome(Status.PENDING, problem)) for row in rows])
            return Launched(len(rows), {row.pk: Status.PENDING for row in rows})
        for row in rows:
            sent = log_context.carried(post)  # the pool thread logs this context's fields
            in_flight[pool().submit(sent, row, prepared.for_row(row))] = row
            handed += 1  # post() gives this slot back
        return Launched(len(rows), {})
    finally:
        give_back_slots(slots - handed)


def _record_late(row: Dispatch, future: "Future[Outcome]") -> None:
    try:
        record_outcomes([(row, future.result())])
    finally:
        connection.close()  # this ran in a pool thread


def send_counted(ids: list[int]) -> dict[str, int]:
    """Claim and send what is due among `ids`; how many reached each status."""
    counts: dict[str, int] = {}
    for status in send(Q(pk__in=ids), Payloads(), deadline=None).values():
        counts[status] = counts.get(status, 0) + 1
    return counts
