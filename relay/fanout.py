"""Fan-out: record every dispatch, then send them in parallel, each exactly once if we can.

1. `record` writes the delivery and one `pending` dispatch per participating repo in one
   transaction, before GitHub is called. A redelivery (same `X-GitHub-Delivery`) adds nothing
   for repos already sent to, and puts failed ones back to `pending`.
2. The dispatches are sent in parallel (relay/sending.py): each claimed with a lease, so the
   webhook's thread and the worker never both send it, its Redis DISPATCHED state written,
   POSTed, and GitHub's answer recorded at once (`sent`, `pending` with the next attempt, or
   `failed`).
3. The webhook waits up to CRCR_FANOUT_DEADLINE; what is not done by then, or must be tried
   again, is left `pending` and a task is queued for `manage.py worker`. A periodic sweep
   sends pending rows whose lease expired (a process died mid-send).

Every dispatch whose answer was recorded is sent exactly once; a process killed between GitHub's
answer and our record of it makes that one dispatch go twice (at least once overall).

Failure modes: Redis down means no DISPATCHED state, and a dispatch without it would have its
callbacks refused, so sending waits for Redis (deferred, nothing lost). The database down means
nothing can be recorded, so the webhook fails and GitHub marks the delivery failed; the
lost-webhook job asks for it again later (relay/redelivery.py).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from allowlist import lookup
from allowlist.entry import Entry
from crcr_site import redis_connection
from hud.models import UpstreamCommit, UpstreamPull
from relay import sending, tasks
from relay.models import CheckRun, Delivery, Dispatch
from relay.upstream_pr import check_runs, labels
from relay.webhook import UpstreamEvent

Status = Dispatch.Status
SWEEP_GRACE = timedelta(seconds=10)  # leave freshly due rows to their queued task


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


def record(event: UpstreamEvent, *, targets: tuple[Entry, ...] | None = None) -> Delivery:
    """The delivery and its dispatches (to `targets`, or every repo taking part in the event),
    durably, before anything is sent.

    Plain SQL, two statements for a new delivery (three for a new pull_request one: the HUD's
    name for its PR, hud.models.UpstreamPull): this runs before the first dispatch can leave,
    so its cost is paid by every fan-out (the ORM's took 24 ms at 50 repos).
    """
    now = timezone.now()
    status = Status.PENDING if settings.CRCR_DISPATCH_ENABLED else Status.SHADOW
    targets = lookup.repos_for_event(event.event) if targets is None else targets
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
        if event.event == "pull_request":
            labels.note(event.repo, event.pr_number, labels.devices_in(event.payload), now)
            dispatching = status == Status.PENDING  # (shadow mode shows nothing upstream)
            queued = check_runs.aggregate_rows(event, targets) if dispatching else []
            CheckRun.objects.bulk_create(queued, ignore_conflicts=True)
        if delivery.times_received == 1 and event.event == "pull_request" and event.pr_number:
            UpstreamPull.note(
                number=event.pr_number,
                upstream_repo=event.repo,
                title=event.title,
                author=event.author,
                at=now,
            )
        if event.event == "push" and event.ref.startswith("refs/heads/") and _pushed(event):
            UpstreamCommit.note(
                upstream_repo=event.repo,
                sha=event.head_sha,
                ref=event.ref,
                default_branch=event.default_branch,
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


def _pushed(event: UpstreamEvent) -> bool:
    """A push that leaves a commit at its ref (not a branch's deletion)."""
    return bool(event.head_sha.strip("0")) and not event.payload.get("deleted")


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


def redis_answers() -> bool:
    try:
        redis_connection.ping()
    except redis_connection.REDIS_ERRORS:
        return False
    return True


def fan_out(event: UpstreamEvent) -> Summary:
    """Record, send within the deadline, queue the rest; the webhook's answer."""
    return send_recorded(record(event), event)


def send_recorded(delivery: Delivery, event: UpstreamEvent) -> Summary:
    """Send a recorded delivery's pending dispatches within the deadline, queue the rest."""
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
        prepared = sending.Payloads(
            {delivery.pk: sending.prepare(delivery, event.payload)}, deliveries=(delivery,)
        )
        outcomes = sending.send(mine, prepared, settings.CRCR_FANOUT_DEADLINE)
    tasks.schedule(mine)
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
    return sending.send_counted(ids) if ids else {}
