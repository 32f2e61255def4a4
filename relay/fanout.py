"""Fan-out: record every dispatch, then send them in parallel, each exactly once if we can.

1. `record` writes the delivery and one `pending` dispatch per participating repo in one
   transaction, before GitHub is called. A redelivery (same `X-GitHub-Delivery`) adds nothing
   for repos already sent to, and puts failed ones back to `pending`.
2. `claim` takes due dispatches with a lease, by one conditional UPDATE: a row is sent by whoever
   holds its lease, so the webhook's thread and the worker never both send it. Rows are claimed
   only when a sending thread is free for each, and a lease lasts longer than one send can
   (CRCR_DISPATCH_LEASE, checked against GITHUB_TIMEOUT by crcr.E006).
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

import functools
import json
import logging
import random
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone
from redis.exceptions import RedisError

from allowlist import lookup
from allowlist.entry import Entry
from crcr_site.redis_connection import get_redis
from hud.models import UpstreamPull
from relay import dispatch_payload, dispatch_token, redis_keys, state
from relay.github import GitHubError, RateLimited, get_app
from relay.models import Delivery, Dispatch
from relay.webhook import UpstreamEvent

logger = logging.getLogger(__name__)

Status = Dispatch.Status
SWEEP_GRACE = timedelta(seconds=10)  # leave freshly due rows to their queued task

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
    """The delivery and its dispatches, durably, before anything is sent.

    Plain SQL, two statements for a new delivery (three for a new pull_request one: the HUD's
    name for its PR, hud.models.UpstreamPull): this runs before the first dispatch can leave,
    so its cost is paid by every fan-out (the ORM's took 24 ms at 50 repos).
    """
    now = timezone.now()
    status = Status.PENDING if settings.CRCR_DISPATCH_ENABLED else Status.SHADOW
    targets = lookup.repos_for_event(event.event)
    delivery = Delivery(
        delivery_id=event.delivery_id,
        event=event.event,
        action=event.action,
        upstream_repo=event.repo,
        pr_number=event.pr_number,
        head_sha=event.head_sha,
        ref=event.ref,
        title=event.title,
        author=event.author,
        body=event.body,
        received_at=now,
        times_received=1,
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(*_delivery_upsert(delivery))
        delivery.pk, delivery.times_received = cursor.fetchone()
        if targets:
            cursor.execute(*_dispatch_insert(delivery.pk, targets, status, now))
        if delivery.times_received == 1 and event.event == "pull_request" and event.pr_number:
            UpstreamPull.note(
                number=event.pr_number,
                upstream_repo=event.repo,
                title=event.title,
                author=event.author,
                at=now,
            )
        if delivery.times_received > 1:
            # A redelivery repairs a partial failure: what failed is tried again.
            delivery.dispatches.filter(status=Status.FAILED).update(
                status=Status.PENDING, next_attempt_at=now, attempts=0, pending_since=now
            )
    return delivery


def _prep(model: type[models.Model], name: str, value: Any) -> Any:
    return model._meta.get_field(name).get_db_prep_save(value, connection)  # type: ignore[union-attr]


def _delivery_upsert(delivery: Delivery) -> tuple[str, list[Any]]:
    """INSERT the delivery, or count one more receipt of it; RETURNING its id and the count."""
    table = Delivery._meta.db_table
    fields = [f for f in Delivery._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(str(f.column) for f in fields)
    statement = (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))}) "  # noqa: S608
        f"ON CONFLICT (delivery_id) DO UPDATE SET times_received = {table}.times_received + 1 "
        "RETURNING id, times_received"
    )
    return statement, [f.get_db_prep_save(getattr(delivery, f.attname), connection) for f in fields]


def _dispatch_insert(
    delivery_pk: int, targets: tuple[Entry, ...], status: str, now: datetime
) -> tuple[str, list[Any]]:
    """One pending (or shadow) row per target; rows that exist are left alone. Only the repo
    varies from row to row, so only it is bound per row (psycopg quotes every parameter)."""
    rows = ", ".join(["(%s, %s, %s)"] * len(targets))
    statement = (
        f"INSERT INTO {Dispatch._meta.db_table} (delivery_id, repo, repo_key, level, status, "  # noqa: S608
        "attempts, last_error, truncated, next_attempt_at, pending_since, lease_owner, "
        "created_at, updated_at) "
        "SELECT %s, v.column1, v.column2, v.column3, %s, 0, '', %s, %s, %s, '', %s, %s "
        f"FROM (VALUES {rows}) AS v WHERE 1 = 1 "  # SQLite needs the WHERE before ON CONFLICT
        "ON CONFLICT (delivery_id, repo_key) DO NOTHING"
    )
    when = _prep(Dispatch, "created_at", now)
    params: list[Any] = [
        delivery_pk,
        status,
        _prep(Dispatch, "truncated", False),
        when,
        when,
        when,
        when,
    ]
    for entry in targets:
        params += [entry.repo, entry.key, entry.level.value]
    return statement, params


def claim(scope: Q, limit: int, known_deliveries: tuple[Delivery, ...] = ()) -> list[Dispatch]:
    """Take up to `limit` due, unleased pending dispatches in `scope` with a fresh lease."""
    now = timezone.now()
    due = Q(status=Status.PENDING, next_attempt_at__lte=now) & (
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    oldest_due = list(
        Dispatch.objects.filter(scope, due)
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    if not oldest_due:
        return []
    owner = uuid.uuid4().hex
    lease = timedelta(seconds=settings.CRCR_DISPATCH_LEASE)
    # The conditions are on the updated rows themselves, so of two concurrent claims on
    # PostgreSQL the second re-checks them after the first commits and takes nothing.
    taken = Dispatch.objects.filter(due, pk__in=oldest_due).update(
        lease_owner=owner, lease_until=now + lease, attempts=F("attempts") + 1
    )
    if not taken:
        return []
    # Read back by primary key: lease_owner has no index, and the table keeps every dispatch.
    rows = list(Dispatch.objects.filter(pk__in=oldest_due, lease_owner=owner))
    # One Delivery object per delivery, not per row (its body is the whole webhook).
    deliveries = {known.pk: known for known in known_deliveries}
    missing = {row.delivery_id for row in rows} - deliveries.keys()
    if missing:
        deliveries |= Delivery.objects.in_bulk(missing)
    for row in rows:
        row.delivery = deliveries[row.delivery_id]
    return rows


def next_attempt(row: Dispatch, now: datetime, retry_after: float = 0.0) -> datetime | None:
    """When to try again (full jitter), or None when CRCR_DISPATCH_GIVE_UP has passed."""
    ceiling = min(
        settings.CRCR_RETRY_CAP, settings.CRCR_RETRY_FIRST * 2 ** max(row.attempts - 1, 0)
    )
    delay = max(random.uniform(0, ceiling), retry_after)  # noqa: S311 (jitter, not secrets)
    when = now + timedelta(seconds=delay)
    since = row.pending_since or row.created_at
    if when > since + timedelta(seconds=settings.CRCR_DISPATCH_GIVE_UP):
        return None
    return when


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
        if sent:  # GitHub took them: true whoever holds the lease now
            Dispatch.objects.filter(pk__in=sent, status=Status.PENDING).update(
                status=Status.SENT,
                sent_at=now,
                lease_until=None,
                last_error="",
                truncated=truncated,
            )
    for row, outcome in results:
        if outcome.status != Status.SENT:
            _finish(row, outcome, now)
        level = logging.INFO if outcome.status == Status.SENT else logging.WARNING
        logger.log(
            level,
            "dispatch %s -> %s: %s %s",
            row.delivery.delivery_id,
            row.repo,
            outcome.status,
            outcome.error,
        )


def _finish(row: Dispatch, outcome: Outcome, now: datetime) -> None:
    values: dict[str, Any] = {
        "status": outcome.status,
        "last_error": outcome.error[:2000],
        "lease_until": None,
        "truncated": outcome.truncated,
    }
    if outcome.status == Status.PENDING:
        when = next_attempt(row, now, outcome.retry_after)
        if when is None:
            values["status"] = Status.FAILED
            values["last_error"] = (
                f"gave up after {settings.CRCR_DISPATCH_GIVE_UP} s: {outcome.error}"
            )
        values["next_attempt_at"] = when
    # Only while we still hold the lease: a sender that lost it must not undo another's work.
    Dispatch.objects.filter(pk=row.pk, lease_owner=row.lease_owner, status=Status.PENDING).update(
        **values
    )


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
    try:
        if isinstance(prepared, str):
            return Outcome(Status.FAILED, prepared)
        return _post(row, prepared)
    except Exception as exc:  # a bug or a surprise must not lose the row: try again later
        logger.exception("dispatch to %s failed unexpectedly", row.repo)
        return Outcome(Status.PENDING, f"unexpected error: {exc!r}")
    finally:
        _slots.release()


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
    except RedisError as exc:
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


def free_slots() -> int:
    """Sending threads free right now (all of them when no fan-out is in progress)."""
    pool()
    return _slots._value  # BoundedSemaphore keeps its count here


def _take_slots(wanted: int, block: float) -> int:
    """Up to `wanted` free sending slots; waits up to `block` seconds for the first one."""
    taken = 0
    if block > 0 and wanted > 0:
        taken = int(_slots.acquire(timeout=block))
        if not taken:
            return 0
    while taken < wanted and _slots.acquire(blocking=False):
        taken += 1
    return taken


def send(scope: Q, prepared: Payloads, deadline: float | None) -> dict[int, str]:
    """Claim and send the due dispatches in `scope`; returns the status each one reached.

    Rows are claimed only as sending slots free up, so every claimed row starts at once and
    its lease (longer than the slowest send) holds until it is recorded. At the deadline the
    webhook answers; sends still in flight record their own outcome when they finish.
    """
    pool()  # makes the slots on first use
    end = None if deadline is None else time.monotonic() + deadline
    outcomes: dict[int, str] = {}
    in_flight: dict[Future[Outcome], Dispatch] = {}
    exhausted = False  # a claim found fewer due rows than it had slots for: none are left
    try:
        while True:
            left = 1.0 if end is None else max(0.0, end - time.monotonic())
            block = 0 if in_flight else min(left, 1.0)
            slots = 0 if exhausted else _take_slots(settings.CRCR_FANOUT_THREADS, block)
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
            in_flight[pool().submit(post, row, prepared.for_row(row))] = row
            handed += 1  # post() gives this slot back
        return Launched(len(rows), {})
    finally:
        for _ in range(slots - handed):
            _slots.release()


def _record_late(row: Dispatch, future: "Future[Outcome]") -> None:
    try:
        record_outcomes([(row, future.result())])
    finally:
        connection.close()  # this ran in a pool thread


def schedule_ids(ids: list[int]) -> None:
    schedule(Q(pk__in=ids))


def schedule(rows: "Q") -> None:
    """Queue a worker task for the pending dispatches among `rows`, due at the earliest."""
    from relay.tasks import send_dispatches

    pending = list(
        Dispatch.objects.filter(rows, status=Status.PENDING).values_list(
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
        prepared = Payloads({delivery.pk: prepare(delivery, event.payload)}, deliveries=(delivery,))
        outcomes = send(mine, prepared, settings.CRCR_FANOUT_DEADLINE)
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
    counts = _send_counted(ids)
    schedule_ids(ids)  # what is still pending among them, claimed now or not yet due
    return counts


def _send_counted(ids: list[int]) -> dict[str, int]:
    """Claim and send what is due among `ids`; how many reached each status."""
    counts: dict[str, int] = {}
    for status in send(Q(pk__in=ids), Payloads(), deadline=None).values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def sweep() -> dict[str, int]:
    """Send pending dispatches nobody is sending (a process died mid-send, a task was lost).

    It queues no task of its own: where a row's task chain still lives, it would run beside a
    second one from then on (each sweep adding another); where it was lost, the sweep finds the
    row again once its next attempt is SWEEP_GRACE overdue."""
    now = timezone.now()
    stale = Q(next_attempt_at__lte=now - SWEEP_GRACE) | Q(lease_until__lt=now)
    ids = list(
        Dispatch.objects.filter(stale, status=Status.PENDING)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:500]
    )
    return _send_counted(ids) if ids else {}
