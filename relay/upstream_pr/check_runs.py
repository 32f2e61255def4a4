"""Upstream check runs (contract section 5): one per downstream job attempt, for an L4 repo on
every PR and for an L3 repo once the PR carries its device's label, and an L4 repo's aggregate
`crcr/{owner}/{repo}` per head, queued from the moment of dispatch.

The relay's side is the outbox (relay.models.CheckRun), one row per check run holding the
newest state to show, written in the same statement as the callback's record (`rows_for`) or
with the dispatch (`aggregate_rows`): no round trip of its own on either path. The worker
(`send_due`) creates each check run once, remembers GitHub's id and then updates it in place;
states that pile up while one is being sent are one row, so only the newest is sent. A create
whose answer was lost is looked for before it is made again, so retries never make a second.

- An L3 row waits (`held`) until its PR carries the label; `on_labeled` releases the rows of
  the labelled head, which backfills every job already reported with its current state.
- A repo temporarily demoted (its allowlist entry `suspended`) gets no new check runs; the
  ones already made are finished.
- The aggregate is `in_progress` with the first job and concludes once no job of the repo on
  that head is in progress and none has moved for CRCR_CHECK_SETTLE seconds: `failure` if a
  job failed, else `success`; cancelled and timed-out jobs alone `neutral` (timed-out ones block
  with CRCR_TIMED_OUT_BLOCKS); `timed_out` when nothing called back within
  CRCR_ZOMBIE_TIMEOUT of the dispatch.

Failure mode: GitHub failing is retried with backoff (and its Retry-After) until
CRCR_DISPATCH_GIVE_UP, never failing a callback; the next state written gives a row given up
a new start.
"""

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from allowlist.entry import Entry, Level
from crcr_site import sql
from hud.storage import HudRecord
from relay import github
from relay.models import CheckRun, PullLabel
from relay.upstream_pr import aggregate, comment, labels, render
from relay.webhook import UpstreamEvent

logger = logging.getLogger(__name__)

Status, Kind = CheckRun.Status, CheckRun.Kind
RANK = {"queued": 0, "in_progress": 1, "completed": 2}
BATCH = 100
MIN_SEND = 1.0  # seconds of lease a send needs at least
# Pull-request actions after which an L4 repo's aggregate is queued on the head.
OPENS = ("opened", "reopened", "synchronize")


def shows(entry: Entry) -> bool:
    """Whether this repo's jobs get upstream check runs at all (L3 when labelled, L4)."""
    return entry.level in (Level.L3, Level.L4)


def job_name(repo: str, workflow: str, job: str) -> str:
    return f"crcr/{repo}/{workflow}/{job}"[:255]


def repo_name(repo: str) -> str:
    return f"crcr/{repo}"[:255]


# -- what is written, with the callback's record or the dispatch ----------------------------


def rows_for(
    entry: Entry,
    record: HudRecord,
    *,
    pr_number: int,
    head_sha: str,
    upstream_repo: str,
    provider: str = "",
) -> list[sql.Row]:
    """The outbox row an accepted PR callback's record brings: its job's check run (an upsert,
    so each stays one row). Nothing else: a row every job of a repo or a PR wrote (the L4
    aggregate, the PR comment) would make them wait on each other's locks; the worker brings
    those up to date from the job rows it sends (`_follow_up`)."""
    if not (shows(entry) and pr_number and head_sha and record.event_type == "pull_request"):
        return []
    now = timezone.now()
    status = record.status or "in_progress"
    workflow, job = record.key.workflow_name, record.key.job_name
    state = {
        "status": status,
        "conclusion": record.conclusion if status == "completed" else None,
        "details_url": record.workflow_run_url,
        "workflow": workflow,
        "job": job,
        "run_id": record.run_id,
        "run_attempt": record.run_attempt,
        "started_at": _iso(record.started_at),
        "completed_at": _iso(record.completed_at),
        "queue_time": record.queue_time,
        "execution_time": record.execution_time,
        "tests": {
            name: getattr(record, f"tests_{name}")
            for name in ("passed", "failed", "skipped", "total")
            if getattr(record, f"tests_{name}") is not None
        },
        "failed_tests": render.failed_test_names(record.failed_tests_detail),
        "provider": provider,  # "github" (Actions: its runs can be asked about), "buildkite"
    }
    common = {
        "upstream_repo": upstream_repo,
        "head_sha": head_sha,
        "pr_number": pr_number,
        "repo": entry.repo,
        "repo_key": entry.key,
        "level": entry.level.value,
        "device": entry.device if entry.level == Level.L3 else "",
        "status": Status.SUPPRESSED if entry.suspended else Status.PENDING,
        "next_attempt_at": now,
        "pending_since": now,
        "created_at": now,
        "updated_at": now,
    }
    rows = [
        _upsert(
            common
            | {
                "name": job_name(entry.repo, workflow, job),
                "kind": Kind.JOB,
                "run_id": record.run_id or "",
                "run_attempt": record.run_attempt or 0,
                "state": state,
                "rank": RANK.get(status, 1),
            }
        )
    ]
    return rows


def _aggregate(repo: str, status: str) -> dict[str, Any]:
    return {
        "name": repo_name(repo),
        "kind": Kind.REPO,
        "run_id": "",
        "run_attempt": 0,
        "state": {"status": status},
        "rank": RANK[status],
    }


def aggregate_rows(event: UpstreamEvent, entries: Iterable[Entry]) -> list[CheckRun]:
    """An L4 repo's aggregate, queued on the PR's head when the dispatch is recorded."""
    if event.event != "pull_request" or event.action not in OPENS or not event.pr_number:
        return []
    now = timezone.now()
    return [
        CheckRun(
            upstream_repo=event.repo,
            head_sha=event.head_sha,
            pr_number=event.pr_number,
            repo=entry.repo,
            repo_key=entry.key,
            level=entry.level.value,
            status=Status.SUPPRESSED if entry.suspended else Status.PENDING,
            next_attempt_at=now,
            pending_since=now,
            created_at=now,
            updated_at=now,
            **_aggregate(entry.repo, "queued"),
        )
        for entry in entries
        if entry.level == Level.L4 and event.head_sha
    ]


KEY = ("upstream_repo", "head_sha", "name", "run_id", "run_attempt")
UPDATED = ("state", "rank", "version", "status", "next_attempt_at", "pending_since", "attempts")


def _upsert(values: dict[str, Any]) -> sql.Row:
    return sql.Row(CheckRun, values, on_conflict=KEY, update=UPDATED, clause=_newer_state)


def _newer_state(update: tuple[str, ...]) -> str:
    """The upsert's DO UPDATE: the newer state, due to be sent. A job's state never goes back
    (a late in_progress after its completed is dropped); an aggregate keeps the state it was
    last sent with, and is worked out again.
    A row waiting to be sent keeps its place in the backoff; a sent or failed one is due now,
    its attempts counted afresh; a held or suppressed one stays so."""
    quote = connections["default"].ops.quote_name
    table = quote(CheckRun._meta.db_table)

    def stored(column: str) -> str:
        return f"{table}.{quote(column)}"

    waiting = f"{stored('status')} = '{Status.PENDING.value}'"
    kept = f"{stored('status')} IN ('{Status.HELD.value}', '{Status.SUPPRESSED.value}')"
    return (
        f"SET {quote('state')} = CASE WHEN {stored('kind')} = '{Kind.REPO.value}' "
        f"THEN {stored('state')} ELSE EXCLUDED.{quote('state')} END, "
        f"{quote('rank')} = EXCLUDED.{quote('rank')}, "
        f"{quote('version')} = {stored('version')} + 1, "
        f"{quote('updated_at')} = EXCLUDED.{quote('updated_at')}, "
        f"{quote('status')} = CASE WHEN {kept} THEN {stored('status')} "
        f"ELSE '{Status.PENDING.value}' END, "
        f"{quote('next_attempt_at')} = CASE WHEN {waiting} THEN {stored('next_attempt_at')} "
        f"ELSE EXCLUDED.{quote('next_attempt_at')} END, "
        f"{quote('pending_since')} = CASE WHEN {waiting} THEN {stored('pending_since')} "
        f"ELSE EXCLUDED.{quote('pending_since')} END, "
        f"{quote('attempts')} = CASE WHEN {waiting} THEN {stored('attempts')} ELSE 0 END "
        f"WHERE {stored('kind')} = '{Kind.REPO.value}' "
        f"OR EXCLUDED.{quote('rank')} >= {stored('rank')}"
    )


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


# -- labels -------------------------------------------------------------------------------


def on_labeled(event: UpstreamEvent) -> dict[str, Any]:
    """`pull_request.labeled`: record the PR's crcr labels and release the held check runs of
    its head for them (the jobs already reported appear, with their current state)."""
    devices = labels.devices_in(event.payload)
    new = labels.note(event.repo, event.pr_number, devices, timezone.now())
    released = _release(event.repo, event.pr_number, devices, head_sha=event.head_sha)
    if new:  # the label's repos count on the PR's comment from now on
        comment.queue(event.repo, event.pr_number)
    return {"ok": True, "labelled": sorted(new), "backfilled": released}


def _release(upstream_repo: str, pr_number: int, devices: Iterable[str], *, head_sha: str) -> int:
    """Held rows of the PR's head for `devices` become due now; how many. (The head is read
    by the unique key's first columns: the table has no index of its own for this.)"""
    wanted = Q()
    for device in devices:
        wanted |= Q(device__iexact=device)
    if not wanted:
        return 0
    now = timezone.now()
    return (
        CheckRun.objects.filter(
            wanted,
            upstream_repo=upstream_repo,
            head_sha=head_sha,
            pr_number=pr_number,
            status=Status.HELD,
        )
        .exclude(device="")
        .update(status=Status.PENDING, next_attempt_at=now, pending_since=now, attempts=0)
    )


def _hold_unlabelled(rows: list[CheckRun]) -> list[CheckRun]:
    """Of claimed rows, hold the L3 ones whose PR lacks the label and that GitHub does not show
    yet; the rest, to send. Checked again after holding: a label that came meanwhile (its
    webhook released nothing, the row was not held yet) releases them here."""
    waiting = [row for row in rows if row.device and row.github_id is None]
    if not waiting:
        return rows
    unlabelled = [row for row in waiting if not _labelled(row)]
    if not unlabelled:
        return rows
    held = CheckRun.objects.filter(
        pk__in=[row.pk for row in unlabelled], lease_owner=unlabelled[0].lease_owner
    )
    held.update(status=Status.HELD, lease_owner="", lease_until=None, attempts=F("attempts") - 1)
    for row in unlabelled:
        if _labelled(row):
            _release(row.upstream_repo, row.pr_number, [row.device], head_sha=row.head_sha)
    ids = {row.pk for row in unlabelled}
    return [row for row in rows if row.pk not in ids]


def _labelled(row: CheckRun) -> bool:
    return PullLabel.objects.filter(
        upstream_repo__iexact=row.upstream_repo, pr_number=row.pr_number, device__iexact=row.device
    ).exists()


# -- sending ------------------------------------------------------------------------------


@dataclass
class Sent:
    """What one send came to: GitHub's id (None: nothing reached it) or the error."""

    row: CheckRun
    version: int
    github_id: int | None = None
    error: str = ""
    retry_after: float = 0.0
    rejected: bool = False
    state: dict[str, Any] | None = None  # an aggregate's state as it was worked out


_pool: ThreadPoolExecutor | None = None


def _senders() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(settings.CRCR_CHECK_RUN_SENDERS, "check-runs")
    return _pool


def send_due(*, seconds: float = 5.0) -> int:
    """Send what is due, batch after batch for up to `seconds`; how many were sent."""
    if not (settings.GITHUB_APP_ID and settings.GITHUB_APP_PRIVATE_KEY):
        return 0
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        count, claimed = _send_batch()
        sent += count
        if claimed < BATCH:
            break
    return sent


def _send_batch() -> tuple[int, int]:
    lease = float(settings.CRCR_DISPATCH_LEASE)
    owner = uuid.uuid4().hex
    rows = CheckRun.objects.claim_due(
        owner=owner, n=BATCH, lease=timedelta(seconds=lease), order=("next_attempt_at", "pk")
    )
    if not rows:
        return 0, 0
    claimed = len(rows)
    rows = _hold_unlabelled(rows)
    jobs = [row for row in rows if row.kind == Kind.JOB]
    sent = _send_all(jobs)  # first: an aggregate may ask GitHub about runs before its send
    _follow_up(jobs)
    return sent + _send_all([row for row in rows if row.kind == Kind.REPO]), claimed


def _send_all(rows: list[CheckRun]) -> int:
    """Send these rows side by side and record what came of each; how many were sent."""
    readings = {row.pk: _state_of(row) for row in rows}
    outcomes = list(_senders().map(lambda row: _send(row, readings[row.pk]), rows))
    return sum(_record(outcome) for outcome in outcomes)


def _follow_up(jobs: list[CheckRun]) -> None:
    """What the job rows just sent move: their L4 repos' aggregates (made here if the
    dispatch did not: a repo promoted to L4 during the PR) are worked out again, and the
    comments of the PRs where a job completed are brought up to date."""
    now = timezone.now()
    heads = {
        (job.upstream_repo, job.head_sha, job.repo_key): job for job in jobs if job.level == "L4"
    }
    if heads:
        made = [
            CheckRun(
                upstream_repo=job.upstream_repo, head_sha=job.head_sha, pr_number=job.pr_number,
                repo=job.repo, repo_key=job.repo_key, level=job.level, next_attempt_at=now,
                pending_since=now, created_at=now, updated_at=now,
                **_aggregate(job.repo, "queued"),
            )
            for job in heads.values()
        ]  # fmt: skip
        CheckRun.objects.bulk_create(made, ignore_conflicts=True)
        touched = Q()
        for upstream_repo, head_sha, key in heads:
            touched |= Q(upstream_repo=upstream_repo, head_sha=head_sha, repo_key=key)
        _touch(CheckRun.objects.filter(touched, kind=Kind.REPO), now)
    completed = {(job.upstream_repo, job.pr_number) for job in jobs if job.rank == 2}
    for upstream_repo, pr_number in completed:
        comment.queue(upstream_repo, pr_number)


def _state_of(row: CheckRun) -> aggregate.Reading:
    """The state to show: a job's as written; an aggregate's worked out from its jobs."""
    return aggregate.Reading(dict(row.state)) if row.kind == Kind.JOB else aggregate.state_of(row)


def _send(row: CheckRun, reading: aggregate.Reading) -> Sent:
    """One check run to GitHub (in a sender thread: no database here)."""
    try:
        state = aggregate.settled(reading, row.repo)
    except Exception as exc:  # (never lose the batch's other outcomes to one)
        return Sent(row, row.version, error=f"{type(exc).__name__}: {exc}")
    outcome = Sent(row, row.version, state=state)
    if row.github_id is not None and row.kind == Kind.REPO and _same(state, row.state):
        outcome.github_id = row.github_id  # GitHub shows it already: a job moved, not the sum
        return outcome
    body = render.check_run_body(row, state)
    app = github.get_app()
    try:
        known = row.github_id
        if known is None and row.attempts > 1:  # an earlier create's answer may have been lost
            known = app.find_check_run(
                row.upstream_repo, row.head_sha, row.name, body["external_id"]
            )
        if known is not None:
            try:
                app.update_check_run(row.upstream_repo, known, body)
                outcome.github_id = known
                return outcome
            except github.NotFound:
                known = None  # deleted on GitHub's side: made again
        outcome.github_id = app.create_check_run(
            row.upstream_repo, body | {"head_sha": row.head_sha}
        )
    except github.RateLimited as exc:
        outcome.error, outcome.retry_after = str(exc), exc.retry_after
    except github.Rejected as exc:
        outcome.error, outcome.rejected = str(exc), exc.status in (400, 422)
    except github.GitHubError as exc:
        outcome.error = str(exc)
    return outcome


def _same(state: dict[str, Any], shown: dict[str, Any]) -> bool:
    """Whether an aggregate's state is the one GitHub shows (but for when to look again)."""
    return {k: v for k, v in state.items() if k != "again"} == {
        k: v for k, v in shown.items() if k != "again"
    }


def _record(outcome: Sent) -> int:
    """The send's outcome on its row: sent when GitHub shows the newest state; still due when a
    newer one came meanwhile (GitHub's id is kept either way)."""
    row, now = outcome.row, timezone.now()
    if outcome.github_id is None:
        if outcome.rejected:
            row.fail(outcome.error)
        else:
            row.retry_later(outcome.error, now=now, retry_after=outcome.retry_after)
        logger.warning("check run %s: %s (%s)", row.name, outcome.error, row.status)
        return 0
    state = outcome.state or {}
    done = row.kind == Kind.JOB or state.get("status") == "completed" or not state.get("again")
    mine = CheckRun.objects.filter(pk=row.pk, lease_owner=row.lease_owner)
    values: dict[str, Any] = {
        "github_id": outcome.github_id,
        "sent_version": outcome.version,
        "sent_at": now,
        "last_error": "",
        "lease_owner": "",
        "lease_until": None,
    }
    if row.kind == Kind.REPO:
        values |= {"state": state, "rank": RANK.get(state.get("status", ""), 1)}
    with transaction.atomic():
        newest = mine.filter(version=outcome.version).update(
            **values,
            status=Status.SENT if done else Status.PENDING,
            next_attempt_at=_again_at(state, now),
        )
        if not newest:  # a newer state came while this one was sent: it is due now
            mine.update(**{k: v for k, v in values.items() if k not in ("state", "rank")})
    return 1


def _again_at(state: dict[str, Any], now: datetime) -> datetime:
    """When an aggregate still settling is worked out again."""
    again = state.get("again")
    return now + timedelta(seconds=float(again)) if again else now


def finish_timed_out(jobs: Sequence[tuple[str, str, int, str]], *, now: datetime) -> int:
    """The zombie sweep's jobs (repo key, run id, run attempt, check-run name suffix
    "{workflow}/{job}"): their check runs completed as `timed_out`, their aggregates due to
    be worked out again; how many job check runs."""
    finished = 0
    for key, run_id, attempt, suffix in jobs:
        rows = CheckRun.objects.filter(
            repo_key=key, run_id=run_id, run_attempt=attempt, kind=Kind.JOB, rank__lt=2
        ).filter(name__endswith=f"/{suffix}")
        for row in rows:
            state = dict(row.state) | {"status": "completed", "conclusion": "timed_out"}
            finished += CheckRun.objects.filter(pk=row.pk, version=row.version).update(
                state=state,
                rank=2,
                version=F("version") + 1,
                status=_due_status(row),
                next_attempt_at=now,
                updated_at=now,
            )
            _touch_aggregate(row, now)
            comment.queue(row.upstream_repo, row.pr_number)
    return finished


def _due_status(row: CheckRun) -> str:
    return row.status if row.status in (Status.HELD, Status.SUPPRESSED) else Status.PENDING


def _touch_aggregate(row: CheckRun, now: datetime) -> None:
    _touch(
        CheckRun.objects.filter(
            kind=Kind.REPO, repo_key=row.repo_key, head_sha=row.head_sha,
            upstream_repo=row.upstream_repo,
        ),
        now,
    )  # fmt: skip


def _touch(aggregates: "QuerySet[CheckRun]", now: datetime) -> None:
    """Aggregates to be worked out again (and sent, if that changes what GitHub shows); one
    waiting already keeps its place in the backoff."""
    aggregates = aggregates.exclude(status__in=(Status.HELD, Status.SUPPRESSED))
    aggregates.filter(status=Status.PENDING).update(version=F("version") + 1, updated_at=now)
    aggregates.exclude(status=Status.PENDING).update(
        status=Status.PENDING, version=F("version") + 1, next_attempt_at=now, pending_since=now,
        attempts=0, updated_at=now,
    )  # fmt: skip


def time_out_silent(*, now: datetime) -> int:
    """Aggregates still queued CRCR_ZOMBIE_TIMEOUT after their dispatch (nothing called
    back): `timed_out`; how many."""
    cutoff = now - timedelta(seconds=settings.CRCR_ZOMBIE_TIMEOUT)
    return (
        CheckRun.objects.filter(kind=Kind.REPO, rank=0, created_at__lt=cutoff)
        .exclude(status=Status.SUPPRESSED)
        .update(
            rank=2,  # (aggregate.state_of: done, with no job: timed out)
            version=F("version") + 1,
            status=Status.PENDING,
            next_attempt_at=now,
            updated_at=now,
        )
    )
