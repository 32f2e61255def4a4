"""An L4 repo's aggregate check run `crcr/{owner}/{repo}` on a head, worked out from its jobs'
check runs (the outbox's job rows: the newest state of every job attempt, whatever the HUD's
backend). Once none of its jobs is in progress, it concludes: for jobs that ran on GitHub
Actions as soon as their workflow runs are completed (GitHub's Actions API, asked through the
App: a run may have jobs yet to start), for other CI once no job has moved for
CRCR_CHECK_SETTLE seconds."""

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from relay import github
from relay.models import CheckRun

logger = logging.getLogger(__name__)

ASK_AGAIN = 15.0  # seconds between questions about runs whose jobs are all done
MAX_RUNS_ASKED = 20  # more distinct runs on one head than this: the settle time decides
# A job's conclusion that does not block alone (PyTorch's merge bot reads them so).
NOT_BLOCKING = ("cancelled", "timed_out", "skipped", "neutral", "stale")


@dataclass(frozen=True)
class Reading:
    """An aggregate's state as the database has it: `state`, unless GitHub's Actions API
    says the runs `ask` names are all completed (then `done`). The question is asked by the
    sender (`settled`), beside the other calls, not while the batch is read."""

    state: dict[str, Any]
    ask: tuple[str, ...] = ()
    done: dict[str, Any] | None = None


def state_of(row: CheckRun) -> Reading:
    """The aggregate's state now: queued, in_progress (with `again`: seconds until it is worked
    out again, while it settles) or completed with its conclusion."""
    jobs = _newest_attempts(row)
    if not jobs and row.rank == 2:  # the zombie sweep's: nothing ever called back
        done = {"status": "completed", "conclusion": "timed_out", "silent": True, "jobs": {}}
        return Reading(done)
    if not jobs:
        return Reading({"status": "queued", "jobs": {}})
    counts: dict[str, int] = {}
    for job in jobs:
        outcome = job.state.get("conclusion") or job.state.get("status") or "in_progress"
        counts[outcome] = counts.get(outcome, 0) + 1
    facts: dict[str, Any] = {"jobs": counts, "details_url": _details(jobs)}
    if any(job.rank < 2 for job in jobs):
        return Reading(facts | {"status": "in_progress"})
    done = facts | {"status": "completed", "conclusion": conclusion(counts)}
    quiet = (timezone.now() - max(job.updated_at for job in jobs)).total_seconds()
    settle = float(settings.CRCR_CHECK_SETTLE)
    settling = facts | {"status": "in_progress", "again": round(settle - quiet, 3) + 0.01}
    state = settling if quiet < settle else done  # every job is done, for now: more may start
    return Reading(state, _actions_runs(jobs), done)


def _actions_runs(jobs: list[CheckRun]) -> tuple[str, ...]:
    """The GitHub Actions runs whose status decides, when every job ran on GitHub Actions."""
    if not all(job.state.get("provider") == "github" for job in jobs):
        return ()
    ids = tuple(sorted({job.run_id for job in jobs if job.run_id.isdigit()}))
    return ids if len(ids) <= MAX_RUNS_ASKED else ()


def settled(reading: Reading, repo: str) -> dict[str, Any]:
    """The state to show: done as soon as GitHub's Actions API says every run is completed
    (a run may have jobs yet to start), asked through the App; while one is not, in progress,
    asked again in ASK_AGAIN seconds; when GitHub cannot say, what the settle time says."""
    if not reading.ask or reading.done is None:
        return reading.state
    app = github.get_app()
    try:
        running = [run for run in reading.ask if app.workflow_run_status(repo, run) != "completed"]
    except github.GitHubError as exc:
        logger.info("runs of %s: %s; settling instead", repo, exc)
        return reading.state
    if running:
        return {**reading.done, "status": "in_progress", "again": ASK_AGAIN, "conclusion": None}
    return reading.done


def conclusion(counts: dict[str, int]) -> str:
    """failure if a job failed (or timed out, with CRCR_TIMED_OUT_BLOCKS), else success if one
    succeeded, else neutral (cancelled or timed-out jobs alone do not block)."""
    blocking = set(counts) - set(NOT_BLOCKING) - {"success"}
    if settings.CRCR_TIMED_OUT_BLOCKS and "timed_out" in counts:
        blocking.add("timed_out")
    if blocking:
        return "failure"
    return "success" if "success" in counts else "neutral"


def _newest_attempts(row: CheckRun) -> list[CheckRun]:
    """The repo's job check runs on this head, the newest attempt of each job."""
    rows = CheckRun.objects.filter(
        kind=CheckRun.Kind.JOB,
        repo_key=row.repo_key,
        head_sha=row.head_sha,
        upstream_repo=row.upstream_repo,
    ).only("name", "run_id", "run_attempt", "state", "rank", "updated_at")
    newest: dict[str, CheckRun] = {}
    for job in rows:
        seen = newest.get(job.name)
        if seen is None or _attempt(job) > _attempt(seen):
            newest[job.name] = job
    return list(newest.values())


def _attempt(job: CheckRun) -> tuple[int, str, int]:
    return (len(job.run_id), job.run_id, job.run_attempt)  # run ids grow: longer is newer


def _details(jobs: list[CheckRun]) -> str | None:
    urls = [job.state.get("details_url") for job in jobs if job.state.get("details_url")]
    return urls[0] if urls else None
