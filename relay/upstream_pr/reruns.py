"""Re-runs asked for on the upstream PR, sent to the downstream repos' GitHub Actions.

- `check_run.rerequested` on a `crcr/{owner}/{repo}/{workflow}/{job}` check run (or its
  "Re-run failed jobs" button, `requested_action` ACTION) re-runs the failed jobs of the run
  its `external_id` names ("{run_id}:{pr_number}"); on an L4 aggregate `crcr/{owner}/{repo}`,
  of every run of that repo on the head SHA with failed jobs left (the HUD's records).
- `check_suite.rerequested` re-runs every distinct run behind the suite's per-job crcr check
  runs, whole, each once. An L4 repo's every job has its own check run in the suite, so its
  aggregate adds no run; and the worker, which lists the suite, may not read a chdb HUD.

Only our App's check runs count, only of repos at L3 or above. The webhook records what it
asked (`Rerun` rows, keyed by delivery, repo and run: a redelivery re-runs nothing twice) and
answers; the worker (`send_due`) lists the suite and sends the re-runs. GitHub's 403 "already
running" is what was asked for, and recorded as such.
"""

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from allowlist import lookup
from allowlist.entry import Entry
from crcr_site.errors import Dependency, Unavailable
from crcr_site.text import stored_text
from hud.storage import StoreUnavailable, get_store
from relay.github import GitHubError, GitHubUnavailable, RateLimited, get_app
from relay.models import Rerun
from relay.webhook import UpstreamEvent

logger = logging.getLogger(__name__)

PREFIX = "crcr/"
ACTION = "crcr_rerun_failed"  # the identifier of the check runs' "Re-run failed jobs" button
RERUN_WINDOW = timedelta(days=30)  # GitHub re-runs a run up to 30 days after it first ran
MAX_RUN_ID = 2**63 - 1
BATCH = 50
MIN_SEND = 1.0  # seconds of lease a GitHub call needs at least; with less, the rest waits


@dataclass(frozen=True)
class CrcrCheckRun:
    """A check run of ours, as GitHub shows it: the downstream repo and run behind it."""

    repo: str  # owner/name as the name spells it
    aggregate: bool  # crcr/{owner}/{repo}: the L4 repo's check run per head
    run_id: int  # from external_id; 0 for an aggregate, or when it names none

    @classmethod
    def of(cls, name: str, external_id: str, app_id: str) -> "CrcrCheckRun | None":
        """What a check run is behind its name; None when it is not ours or not crcr's."""
        if not settings.GITHUB_APP_ID or app_id != str(settings.GITHUB_APP_ID):
            return None
        if not name.startswith(PREFIX):
            return None
        parts = name[len(PREFIX) :].split("/", 2)  # workflow and job names may hold a "/"
        if len(parts) < 2 or not parts[0] or not parts[1] or parts[2:] == [""]:
            return None
        if len(parts) == 2:
            return cls(f"{parts[0]}/{parts[1]}", aggregate=True, run_id=0)
        run = external_id.partition(":")[0]
        run_id = int(run) if run.isascii() and run.isdigit() and len(run) < 20 else 0
        return cls(f"{parts[0]}/{parts[1]}", aggregate=False, run_id=_id(run_id))


@dataclass
class Asked:
    """What a re-run webhook asked for: the rows it recorded now, and those a delivery with
    the same id had recorded already."""

    queued: list[Rerun] = field(default_factory=list)
    already: list[Rerun] = field(default_factory=list)
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        if not self.queued and not self.already and self.reason:
            return {"ok": True, "ignored": True, "reason": self.reason}
        answer: dict[str, Any] = {"ok": True, "queued": [_shown(r) for r in self.queued]}
        if self.already:
            answer["already_asked"] = [_shown(r) for r in self.already]
        if self.reason:
            answer["reason"] = self.reason
        return answer


def _shown(row: Rerun) -> dict[str, Any]:
    if row.kind == Rerun.Kind.SUITE:
        return {"kind": row.kind, "check_suite": row.suite_id}
    return {"kind": row.kind, "repo": row.repo, "run_id": row.run_id}


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _id(value: object) -> int:
    return value if isinstance(value, int) and 0 < value <= MAX_RUN_ID else 0


def _app_id(obj: dict[str, Any]) -> str:
    return str(_id(_obj(obj.get("app")).get("id")) or "")


def _participant(repo: str) -> Entry | None:
    """The allowlist's entry for a repo at L3 or above (the levels with check runs)."""
    entry = lookup.snapshot().get(repo)
    return entry if entry is not None and entry.level.rank >= 3 else None


def on_webhook(event: UpstreamEvent) -> Asked:
    """Record the re-runs a `check_run` or `check_suite` webhook asks for."""
    if event.event == "check_suite":
        return _on_suite(event)
    payload = event.payload
    if event.action == "requested_action":
        identifier = _text(_obj(payload.get("requested_action")).get("identifier"))
        if identifier != ACTION:
            return Asked(reason=f"the action {identifier[:100]!r} is not ours")
    check = _obj(payload.get("check_run"))
    seen = CrcrCheckRun.of(
        _text(check.get("name")), _text(check.get("external_id")), _app_id(check)
    )
    if seen is None:
        return Asked(reason="not a crcr check run of this relay's App")
    entry = _participant(seen.repo)
    if entry is None:
        return Asked(reason=f"{seen.repo} is not an L3 or L4 repo")
    now = timezone.now()
    head_sha = stored_text(_text(check.get("head_sha"))[:64])
    if seen.aggregate:
        run_ids = _failed_runs(entry, head_sha, now)
        if not run_ids:
            return Asked(reason=f"no run of {entry.repo} on {head_sha[:12]} has failed jobs")
    elif seen.run_id:
        run_ids = [seen.run_id]
    else:
        return Asked(reason="the check run's external_id names no downstream run")
    rows = [
        _row(event.delivery_id, Rerun.Kind.FAILED_JOBS, entry, run_id, head_sha, now)
        for run_id in run_ids
    ]
    return _record(event.delivery_id, rows)


def _on_suite(event: UpstreamEvent) -> Asked:
    suite = _obj(event.payload.get("check_suite"))
    if not settings.GITHUB_APP_ID or _app_id(suite) != str(settings.GITHUB_APP_ID):
        return Asked(reason="not a check suite of this relay's App")
    suite_id = _id(suite.get("id"))
    if not suite_id:
        return Asked(reason="the check suite has no id")
    row = Rerun(
        delivery_id=event.delivery_id,
        kind=Rerun.Kind.SUITE,
        suite_id=suite_id,
        head_sha=stored_text(_text(suite.get("head_sha"))[:64]),
        next_attempt_at=timezone.now(),
    )
    return _record(event.delivery_id, [row])


def _failed_runs(entry: Entry, head_sha: str, now: datetime) -> list[int]:
    try:
        runs = get_store().runs_on_head(entry.key, head_sha, since=now - RERUN_WINDOW)
    except StoreUnavailable:
        raise Unavailable(
            Dependency.RESULTS_STORE,
            "the HUD's records of the head could not be read",
            error="results_store_unavailable",
        ) from None
    return [int(run.run_id) for run in runs if run.failed and run.run_id.isdigit()]


def _row(
    delivery_id: str, kind: str, entry: Entry, run_id: int, head_sha: str, now: datetime
) -> Rerun:
    return Rerun(
        delivery_id=delivery_id,
        kind=kind,
        repo=entry.repo,
        repo_key=entry.key,
        run_id=run_id,
        head_sha=stored_text(head_sha[:64]),
        next_attempt_at=now,
    )


def _record(delivery_id: str, rows: list[Rerun]) -> Asked:
    """Insert the rows this delivery has not recorded yet (a redelivery finds them; of two
    at once, the unique key keeps one)."""
    known = {(r.repo_key, r.run_id): r for r in Rerun.objects.filter(delivery_id=delivery_id)}
    asked = Asked()
    for row in rows:
        had = known.get((row.repo_key, row.run_id))
        (asked.already if had else asked.queued).append(had or row)
    Rerun.objects.bulk_create(asked.queued, ignore_conflicts=True)
    return asked


# --- the worker's side -----------------------------------------------------------------------


def send_due() -> dict[str, int]:
    """Send the due re-runs, and list the due check suites into re-runs sent in the same
    pass; how many rows ended each way ("re-run", "already running", "failed", ...)."""
    lease = float(settings.CRCR_DISPATCH_LEASE)
    deadline = time.monotonic() + lease
    owner = uuid.uuid4().hex
    counts: Counter[str] = Counter()
    for _ in range(2):  # a suite's runs are found in the first round and sent in the second
        rows = Rerun.objects.claim_due(
            owner=owner, n=BATCH, lease=timedelta(seconds=lease), order=("pk",)
        )
        for n, row in enumerate(rows):
            if deadline - time.monotonic() < MIN_SEND:  # the lease would end mid-call
                Rerun.objects.filter(pk__in=[r.pk for r in rows[n:]]).hand_back(owner=owner)
                return dict(counts)
            counts[_send(row)] += 1
        if not any(row.kind == Rerun.Kind.SUITE for row in rows):
            break
    return dict(counts)


def _send(row: Rerun) -> str:
    """One claimed row to GitHub; how it ended."""
    now = timezone.now()
    try:
        if row.kind == Rerun.Kind.SUITE:
            outcome = _list_suite(row, now)
        else:
            failed_only = row.kind == Rerun.Kind.FAILED_JOBS
            done = get_app().rerun(row.repo, row.run_id, failed_only=failed_only)
            outcome = "re-run" if done else "already running"
            Rerun.objects.filter(pk=row.pk).mark_sent(now=now, outcome=outcome)
    except RateLimited as exc:
        row.retry_later(str(exc), now=now, retry_after=exc.retry_after)
    except GitHubUnavailable as exc:
        row.retry_later(str(exc), now=now)
    except GitHubError as exc:  # refused, not found, not installed: kept for the admin
        row.fail(str(exc))
    else:
        logger.info("re-run %s: %s", row, outcome)
        return outcome
    logger.warning("re-run %s: %s (%s)", row, row.last_error, row.status)
    return "failed" if row.status == Rerun.Status.FAILED else "retrying"


def _list_suite(row: Rerun, now: datetime) -> str:
    """The suite's crcr check runs of L3+ repos become one row per distinct run."""
    runs: dict[tuple[str, int], Rerun] = {}
    for check in get_app().suite_check_runs(settings.CRCR_UPSTREAM_REPO, row.suite_id):
        seen = CrcrCheckRun.of(check.name, check.external_id, check.app_id)
        entry = _participant(seen.repo) if seen is not None and seen.run_id else None
        if seen is not None and entry is not None:
            runs.setdefault(
                (entry.key, seen.run_id),
                _row(row.delivery_id, Rerun.Kind.RUN, entry, seen.run_id, check.head_sha, now),
            )
    outcome = f"{len(runs)} downstream run(s) to re-run"
    with transaction.atomic():
        Rerun.objects.bulk_create(list(runs.values()), ignore_conflicts=True)
        Rerun.objects.filter(pk=row.pk).mark_sent(now=now, outcome=outcome)
    return "listed"
