"""What the HUD shows, as the dataclasses every storage backend returns (hud/storage/base.py).

Semantics, the same on every backend (the contract tests in tests/hud/test_store_contract.py
hold each backend to them):

- A window is the last N days of the relay's own clock: a record counts when it was first
  *received* in the window (contract §3), whatever `started_at` the client reported.
- `completed` counts jobs whose status is completed, whatever their conclusion; the pass rate
  is successes ÷ completed. Failures are conclusions `failure` and `startup_failure`;
  `timed_out` and `cancelled` are counted apart. Every attempt of a job is a run of it.
- Execution-time percentiles are nearest-rank over completed jobs with a measured time: p50 is
  the value at rank ⌈n/2⌉ of the sorted times, p90 at rank ⌈9n/10⌉ (exact, no interpolation).
- Queue-time figures (average, p90) leave out re-runs (`run_attempt > 1`): a re-run's queue
  is not the backend's capacity to pick up new work.
- A matrix cell is a job's latest attempt in its row (highest `run_attempt`, then newest).
  Rows are (PR number, head SHA) for PR/push results; a push has its PR number only when it
  came from a `refs/tags/ciflow/<name>/<N>` tag, else it is a row of PR 0 for its SHA. Nightly
  rows are per SHA.
- A repo that reports but is not on the allowlist is shown under the level its newest record
  carries; with none, under L2 (the lowest level whose results the HUD shows).
- A downstream run on a head SHA (`runs_on_head`) is failed when its latest attempt (highest
  `run_attempt` among its records) has a completed job that ended `failure`,
  `startup_failure`, `timed_out` or `cancelled`: what GitHub's "re-run failed jobs" re-runs.
- The probe repo (CRCR_PROBE_REPO) feeds the relay-health card and is left out of the level
  tables; its jobs named `xfail`, `xcancel` and `xtimeout` are expected to end `failure`,
  `cancelled` and `timed_out`, every other job `success`. Wherever the probe's figures are
  shown, a job that ended as expected counts as a success, one expected to fail that passed
  as a failure, any other its conclusion (`probe_judged`).
- Failures triaged upstream (the triage toggle, off by default; a read's `without_upstream`):
  a completed job that ended `failure` or `startup_failure` and whose triage verdict's
  `category` is `upstream` (the upstream change's fault, as the downstream's triage judged it)
  is then not counted: neither a failure nor completed, so it is in no pass rate, timeout
  rate or total, and Counts and ReadinessMetrics say how many were left out (`excluded`).
  Timeouts and cancellations count as ever (triage speaks of failures), and the times
  (percentiles, averages) still measure every job: it held a runner all the same.
- A tab's count (`TabCount`) is how many repos have records received in the window among its
  events, and how many records (every attempt, completed or running), whatever the toggle.
"""

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, cast


class Kind(StrEnum):
    """The HUD's two tabs."""

    PR = "pr"  # pull_request and push
    NIGHTLY = "nightly"  # nightly and periodic

    @property
    def events(self) -> tuple[str, ...]:
        return EVENTS[self]


EVENTS = {Kind.PR: ("pull_request", "push"), Kind.NIGHTLY: ("nightly", "periodic")}
FAILURES = ("failure", "startup_failure")
RED = (*FAILURES, "timed_out")  # the outcomes that make a result red
RERUNNABLE = (*RED, "cancelled")  # the jobs GitHub's "re-run failed jobs" runs again
# Counts' fields in order, each as the SQL condition it counts: plain SQL that PostgreSQL,
# SQLite and ClickHouse all read the same way (the backends' raw queries share it).
COUNT_CONDITIONS = (
    "status = 'completed' AND conclusion = 'success'",
    f"status = 'completed' AND conclusion IN ({', '.join(repr(c) for c in FAILURES)})",
    "status = 'completed' AND conclusion = 'timed_out'",
    "status = 'completed' AND conclusion = 'cancelled'",
    "status = 'completed'",
    "status <> 'completed'",
)
DAYS = (1, 7, 14, 30, 90)
DEFAULT_DAYS = 14
# The triage verdict category of a failure the downstream put on the upstream change.
UPSTREAM_CATEGORY = "upstream"


def upstream_failure(category: str) -> str:
    """A failure triaged upstream as an SQL condition, `category` being the verdict's category
    as the engine reads it from the stored JSON (an empty or NULL reading: not triaged)."""
    return f"{COUNT_CONDITIONS[1]} AND {category} = '{UPSTREAM_CATEGORY}'"


# The query parameter's value that turns the triage toggle on (hud/pages.py Query).
WITHOUT_UPSTREAM = "exclude-upstream"
# The probe's jobs whose expected outcome is not success.
PROBE_EXPECTATIONS = {"xfail": "failure", "xcancel": "cancelled", "xtimeout": "timed_out"}
# What a matrix cell is, for filtering: the conclusion, or `in_progress` while it runs.
OUTCOMES = ("success", "failure", "timed_out", "cancelled", "in_progress")


@dataclass(frozen=True)
class Window:
    """The last `days` days up to `end` (the relay's clock)."""

    days: int
    end: datetime

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)


@dataclass(frozen=True)
class Counts:
    successes: int = 0
    failures: int = 0
    timed_out: int = 0
    cancelled: int = 0
    completed: int = 0
    in_progress: int = 0
    excluded: int = 0  # failures triaged upstream, left out of failures and completed (toggle)

    @property
    def total(self) -> int:
        """Every job: completed and in progress."""
        return self.completed + self.in_progress

    @property
    def records(self) -> int:
        """Every job counted, those left out (excluded) too."""
        return self.total + self.excluded

    @property
    def other(self) -> int:
        """Completed with a conclusion none of the other counts has (skipped, neutral, …):
        successes + failures + timed_out + cancelled + other = completed."""
        return self.completed - self.successes - self.failures - self.timed_out - self.cancelled

    @property
    def pass_rate(self) -> float | None:
        """successes ÷ completed, None when nothing completed."""
        return self.successes / self.completed if self.completed else None

    def excluding(self, upstream: int) -> "Counts":
        """These counts without `upstream` of their failures (those triaged upstream): neither
        failures nor completed any more, counted as excluded."""
        if not upstream:
            return self
        return replace(
            self,
            failures=self.failures - upstream,
            completed=self.completed - upstream,
            excluded=self.excluded + upstream,
        )

    @classmethod
    def of(cls, jobs: Iterable[tuple[str, str]]) -> "Counts":
        """The counts of (status, conclusion) pairs, as COUNT_CONDITIONS count them in SQL."""
        tally = dict.fromkeys(("successes", "failures", "timed_out", "cancelled"), 0)
        completed = in_progress = 0
        for status, conclusion in jobs:
            if status != "completed":
                in_progress += 1
                continue
            completed += 1
            if conclusion == "success":
                tally["successes"] += 1
            elif conclusion in FAILURES:
                tally["failures"] += 1
            elif conclusion in ("timed_out", "cancelled"):
                tally[conclusion] += 1
        return cls(**tally, completed=completed, in_progress=in_progress)


@dataclass(frozen=True)
class DailyPoint:
    day: date
    counts: Counts


@dataclass(frozen=True)
class TabCount:
    """One tab over a window: the repos with results there and their results (records)."""

    kind: Kind
    repos: int
    results: int


def tab_counts_of(rows: Iterable[Sequence[Any]]) -> tuple[TabCount, ...]:
    """Each tab's count, in the tabs' order, from (event type, repo key, records) rows (a repo
    may have several rows of a tab: they add up; a repo whose records sum to none is not one)."""
    tab_of = {event: kind for kind in Kind for event in kind.events}
    found: dict[Kind, dict[str, int]] = {kind: {} for kind in Kind}
    for event, repo, records in rows:
        if event in tab_of:
            repos = found[tab_of[event]]
            repos[repo] = repos.get(repo, 0) + int(records or 0)
    return tuple(
        TabCount(kind, sum(n > 0 for n in repos.values()), sum(n for n in repos.values() if n > 0))
        for kind, repos in found.items()
    )


def outcome_of(status: str, conclusion: str) -> str:
    """A job's outcome: its conclusion once completed, else in_progress."""
    return conclusion if status == "completed" else "in_progress"


class Measured:
    """A dataclass whose float measures are finite or None: a backend may hold any value
    (NaN or infinity written before the edge refused them, or by another writer), and every
    page and API answer must survive it (JSON has no NaN)."""

    _measures: ClassVar[tuple[str, ...]]

    def __post_init__(self) -> None:
        cls = type(self)
        if "_measures" not in cls.__dict__:  # its fields that may hold a float, found once
            cls._measures = tuple(f.name for f in fields(cast(Any, self)) if "float" in str(f.type))
        for name in cls._measures:
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                object.__setattr__(self, name, None)


@dataclass(frozen=True)
class PrJob(Measured):
    """A job's latest attempt on one head of a PR (the PR page's list of every job)."""

    job_name: str
    workflow_name: str
    status: str
    conclusion: str
    run_attempt: int
    execution_time: float | None
    run_url: str  # the downstream run (workflow_run_url)
    log_url: str  # the job's log where GitHub Actions names it, else the run (job_log_url)
    artifact_url: str

    @property
    def outcome(self) -> str:
        return outcome_of(self.status, self.conclusion)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "PrJob":
        run = row["workflow_run_url"] or ""
        return cls(
            job_name=row["job_name"],
            workflow_name=row["workflow_name"],
            status=row["status"],
            conclusion=row["conclusion"] or "",
            run_attempt=row["run_attempt"] or 1,
            execution_time=row["execution_time"],
            run_url=run,
            log_url=job_log_url(run, row["check_run_id"]),
            artifact_url=row["artifact_url"] or "",
        )


# The stored fields PrJob.of reads.
PR_JOB_SOURCE = (
    "job_name",
    "workflow_name",
    "status",
    "conclusion",
    "run_attempt",
    "execution_time",
    "workflow_run_url",
    "check_run_id",
    "artifact_url",
)


@dataclass(frozen=True)
class MainResult:
    """A job's result on the upstream's main (a push of a main SHA, a nightly or periodic
    run): its latest attempt on that SHA."""

    repo_key: str
    head_sha: str
    job_name: str
    status: str
    conclusion: str
    run_attempt: int
    at: datetime


def latest_attempts(results: Iterable[MainResult]) -> list[MainResult]:
    """Each (repo, SHA, job)'s latest attempt (highest, then newest), newest first."""
    latest: dict[tuple[str, str, str], MainResult] = {}
    for result in results:
        key = (result.repo_key, result.head_sha, result.job_name)
        kept = latest.get(key)
        if kept is None or (result.run_attempt, result.at) > (kept.run_attempt, kept.at):
            latest[key] = result
    return sorted(latest.values(), key=lambda r: r.at, reverse=True)


@dataclass(frozen=True)
class JobStats:
    """One job of a repo over a window, counted per head it ran on (PR and SHA, or SHA):
    on how many heads a completed attempt was red, and on how many its attempts disagreed (a
    red one and a passing one: failed, then passed on a re-run, or the other way round)."""

    job_name: str
    heads: int
    failed_heads: int
    flaky_heads: int
    flaky_shas: tuple[str, ...] = ()  # the heads it flipped on

    @property
    def flaky_rate(self) -> float:
        return self.flaky_heads / self.heads if self.heads else 0.0

    @property
    def failure_rate(self) -> float:
        return self.failed_heads / self.heads if self.heads else 0.0


def job_stats_of(heads: Iterable[tuple[str, str, bool, bool]]) -> list[JobStats]:
    """JobStats per job (by name) from one row per (job, head): (job, sha, red, green)."""
    found: dict[str, list[Any]] = {}
    for job, sha, red, green in heads:
        stats = found.setdefault(job, [0, 0, 0, []])
        stats[0] += 1
        stats[1] += bool(red)
        if red and green:
            stats[2] += 1
            stats[3].append(sha)
    return [
        JobStats(job, n, failed, flaky, tuple(sorted(shas)))
        for job, (n, failed, flaky, shas) in sorted(found.items())
    ]


def nearest_ranks(values: Sequence[float], *fractions: float) -> list[float | None]:
    """The nearest-rank percentile of `values` at each fraction: the value at rank ⌈n·p⌉ in
    ascending order (None when there are none), as every backend's SQL computes it."""
    ordered = sorted(values)
    return [
        ordered[max(math.ceil(len(ordered) * fraction - 1e-9), 1) - 1] if ordered else None
        for fraction in fractions
    ]


@dataclass(frozen=True)
class DailyTimes(Measured):
    """One day of a repo's times, nearest-rank like the summary's: queue over first attempts
    that measured one, execution over completed jobs that measured one; None when none did."""

    day: date
    p50_queue: float | None
    p90_queue: float | None
    p50_execution: float | None
    p90_execution: float | None


@dataclass(frozen=True)
class RepoSummary(Measured):
    """One repo's results over a window."""

    repo: str  # owner/name as shown
    key: str  # casefolded
    level: str  # the latest reported level (the page prefers the allowlist's)
    counts: Counts
    prs: int  # distinct upstream PRs (push results without a PR not counted)
    avg_execution: float | None
    p50_execution: float | None
    p90_execution: float | None
    avg_queue: float | None
    p90_queue: float | None
    last_run: datetime | None
    daily: tuple[DailyPoint, ...] = ()
    last_sha: str = ""  # the upstream SHA of its newest record (a nightly: the latest tested)

    @property
    def timeout_rate(self) -> float | None:
        done = self.counts.completed
        return self.counts.timed_out / done if done else None


def overview_measured(summary: RepoSummary) -> RepoSummary:
    """The summary as a read for /crcr gives it (`overview`): of its measures only the ones
    that page shows, p50 and p90 of execution and the average queue; the PR count 0 and the
    other times None (not read: each is a sort of every record of the window)."""
    return replace(summary, prs=0, avg_execution=None, p90_queue=None)


@dataclass(frozen=True)
class WindowFigures:
    """What the overview and metrics pages read of one window: each repo's summary (worst
    first), the tabs' counts and, when asked for, each repo's daily times."""

    summaries: list[RepoSummary]
    tabs: tuple[TabCount, ...]
    times: dict[str, tuple[DailyTimes, ...]]
    heard: dict[str, datetime]  # of the repos asked about, each one's newest record since start


def worst_first(summary: RepoSummary) -> tuple[float, str]:
    """Sort key: lowest pass rate first (none at the end), then by name."""
    rate = summary.counts.pass_rate
    return (2.0 if rate is None else rate, summary.repo.casefold())


@dataclass(frozen=True)
class Cell(Measured):
    """A job's latest attempt in one matrix row."""

    job_name: str
    workflow_name: str
    status: str
    conclusion: str
    run_attempt: int
    execution_time: float | None
    queue_time: float | None
    tests_passed: int | None
    tests_total: int | None
    failed_tests: tuple[str, ...]  # the first few names
    triage_verdict: dict[str, Any] | None
    log_url: str  # the job's log on GitHub Actions, else the run's URL (job_log_url)
    received_at: datetime

    @property
    def outcome(self) -> str:
        return outcome_of(self.status, self.conclusion)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "Cell":
        """The cell of a stored record (any backend's row, as field → value)."""
        detail = row["failed_tests_detail"]
        failed = tuple(
            str(test.get("name") or test.get("test") or "")
            for test in (detail if isinstance(detail, list) else [])[:FAILED_TESTS_SHOWN]
            if isinstance(test, dict)
        )
        verdict = row["triage_verdict"]
        return cls(
            job_name=row["job_name"],
            workflow_name=row["workflow_name"],
            status=row["status"],
            conclusion=row["conclusion"],
            run_attempt=row["run_attempt"],
            execution_time=row["execution_time"],
            queue_time=row["queue_time"],
            tests_passed=row["tests_passed"],
            tests_total=row["tests_total"],
            failed_tests=failed,
            triage_verdict=verdict if isinstance(verdict, dict) else None,
            log_url=job_log_url(row["workflow_run_url"], row["check_run_id"]),
            received_at=row["received_at"],
        )


FAILED_TESTS_SHOWN = 3
# The stored fields Cell.of reads: backends fetch these (and their own keys), nothing wider.
CELL_SOURCE = (
    "job_name",
    "workflow_name",
    "status",
    "conclusion",
    "run_attempt",
    "execution_time",
    "queue_time",
    "tests_passed",
    "tests_total",
    "failed_tests_detail",
    "triage_verdict",
    "workflow_run_url",
    "check_run_id",
    "received_at",
)

# A GitHub Actions run as its reporter names it (an attempt's URL too), and a job id: GitHub
# opens a job's log at {run}/job/{job id}, where the id is the job's check run id.
_ACTIONS_RUN = re.compile(
    r"(https://github\.com/[^/?#]+/[^/?#]+/actions/runs/[0-9]+)(/attempts/[0-9]+)?/?"
)
_JOB_ID = re.compile(r"[0-9]{1,20}")


def job_log_url(run_url: str | None, check_run_id: str | None) -> str:
    """The job's log where the run is a github.com Actions run and the job id is GitHub's
    (numeric); else the run's URL as reported (the pages link it only when safe)."""
    run = _ACTIONS_RUN.fullmatch(run_url or "")
    if run is None or not _JOB_ID.fullmatch(check_run_id or ""):
        return run_url or ""
    return f"{run.group(1)}/job/{check_run_id}"


@dataclass(frozen=True)
class MatrixRow:
    pr_number: int
    head_sha: str
    first_at: datetime
    last_at: datetime
    cells: dict[str, Cell] = field(default_factory=dict)  # job name → cell


@dataclass(frozen=True)
class MatrixPage:
    """One page of a repo's PR x job matrix, newest rows first."""

    repo: str
    columns: tuple[str, ...]  # job names, sorted
    rows: tuple[MatrixRow, ...]
    page: int
    pages: int
    total_rows: int


@dataclass(frozen=True)
class RecentRuns:
    """A repo's newest matrix rows in each tab (the relay-health card's probe runs)."""

    repo: str  # as its records name it ('' when it has none)
    rows: dict[Kind, tuple[MatrixRow, ...]]


@dataclass(frozen=True)
class ShaResult:
    """One downstream repo's results for one head SHA of a PR (latest attempt per job)."""

    head_sha: str
    first_at: datetime
    counts: Counts

    @property
    def red(self) -> bool:
        """Any job failed or timed out (RED)."""
        return bool(self.counts.failures or self.counts.timed_out)


@dataclass(frozen=True)
class PrRepo:
    """A downstream repo's view of one upstream PR."""

    repo: str
    key: str
    level: str
    shas: tuple[ShaResult, ...]  # oldest first
    failing: tuple[Cell, ...]  # failed or timed-out jobs on the latest SHA

    @property
    def latest(self) -> ShaResult:
        return self.shas[-1]

    @property
    def red_since(self) -> str | None:
        """The first head SHA of the run of red SHAs that ends at the latest, if it is red."""
        since = None
        for result in reversed(self.shas):
            if not result.red:
                break
            since = result.head_sha
        return since


@dataclass(frozen=True)
class PrView:
    number: int
    repos: tuple[PrRepo, ...]  # red first, then by name

    @classmethod
    def of(
        cls,
        number: int,
        shas: Mapping[str, Sequence[ShaResult]],
        shown: Mapping[str, tuple[str, str]],
        failing: Mapping[str, tuple["Cell", ...]],
    ) -> "PrView":
        """A PR's view from what a backend read: each repo key's head results (oldest first),
        its display name and level, and its failing jobs on a red latest head."""
        repos = [
            PrRepo(
                repo=shown[key][0],
                key=key,
                level=shown[key][1],
                shas=tuple(results),
                failing=failing.get(key, ()),
            )
            for key, results in shas.items()
        ]
        repos.sort(key=lambda r: (not r.latest.red, r.repo.casefold()))
        return cls(number=number, repos=tuple(repos))


# What a backend reads of each latest attempt of a PR's jobs for pr_of_latest: the cell's
# and the job list's fields, with the repo, head and what the repo is shown as.
PR_LATEST_SOURCE = tuple(
    dict.fromkeys(
        ("downstream_repo", "head_sha", "repo_display", "level", *CELL_SOURCE, *PR_JOB_SOURCE)
    )
)

PrJobs = dict[str, dict[str, tuple[PrJob, ...]]]  # repo key → head SHA → its jobs

# pr_of_latest's `jobs_on`: which heads' jobs it lists, beside every head's results. A SHA
# (of the upstream PR) lists that head's jobs of each repo that ran it.
EVERY_HEAD = "*"
LATEST_HEAD = "latest"  # each repo's latest head


def pr_of_latest(
    number: int,
    rows: Iterable[dict[str, Any]],
    *,
    jobs_on: str = EVERY_HEAD,
    decoded: Callable[[dict[str, Any]], dict[str, Any]] = lambda row: row,
) -> tuple[PrView, PrJobs]:
    """A PR's view and its jobs (store.pr, store.pr_jobs) from the latest attempt of each
    job of each repo's heads (PR_LATEST_SOURCE): one read answers the whole PR page.

    A head's first_at is its earliest latest attempt; a repo is shown by the name and level of
    its newest one; its failing jobs are its latest head's red ones, by job name. The jobs
    listed are those of the heads `jobs_on` names. `decoded` gives a row its JSON fields as
    values: only a failing job's cell reads them, so only those rows are decoded."""
    by_head: dict[str, dict[str, list[dict[str, Any]]]] = {}
    newest: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row["downstream_repo"]
        by_head.setdefault(key, {}).setdefault(row["head_sha"], []).append(row)
        if key not in newest or row["received_at"] > newest[key]["received_at"]:
            newest[key] = row
    shas: dict[str, list[ShaResult]] = {}
    failing: dict[str, tuple[Cell, ...]] = {}
    jobs: PrJobs = {}
    for key, heads in by_head.items():
        results = [
            ShaResult(
                sha,
                min(job["received_at"] for job in on_head),
                Counts.of((job["status"], job["conclusion"]) for job in on_head),
            )
            for sha, on_head in heads.items()
        ]
        shas[key] = sorted(results, key=lambda result: (result.first_at, result.head_sha))
        latest = shas[key][-1]
        if latest.red:
            red = [
                Cell.of(decoded(job))
                for job in heads[latest.head_sha]
                if outcome_of(job["status"], job["conclusion"]) in RED
            ]
            failing[key] = tuple(sorted(red, key=lambda cell: cell.job_name))
        listed = {EVERY_HEAD: heads.keys(), LATEST_HEAD: (latest.head_sha,)}.get(
            jobs_on, (jobs_on,) if jobs_on in heads else ()
        )
        jobs[key] = {
            sha: tuple(
                sorted(map(PrJob.of, heads[sha]), key=lambda j: (j.workflow_name, j.job_name))
            )
            for sha in listed
        }
    shown = {key: (row["repo_display"], row["level"]) for key, row in newest.items()}
    return PrView.of(number, shas, shown, failing), jobs


def red_heads(shas: Mapping[str, Sequence[ShaResult]]) -> dict[str, str]:
    """repo key → its latest head SHA, for the repos red there."""
    return {key: results[-1].head_sha for key, results in shas.items() if results[-1].red}


@dataclass(frozen=True)
class ReadinessMetrics(Measured):
    """What the level criteria measure over a window."""

    days: int
    completed: int
    pass_rate: float | None
    timeout_rate: float | None
    p50_end_to_end: float | None  # queue + execution, seconds
    avg_queue: float | None
    excluded: int = 0  # failures triaged upstream left out (the toggle), not in `completed`

    @classmethod
    def of(
        cls, days: int, counts: Counts, p50_end_to_end: float | None, avg_queue: float | None
    ) -> "ReadinessMetrics":
        """What a window measured, from its counts (the toggle already applied) and times."""
        done = counts.completed
        return cls(
            days=days,
            completed=done,
            pass_rate=counts.pass_rate,
            timeout_rate=counts.timed_out / done if done else None,
            p50_end_to_end=p50_end_to_end,
            avg_queue=avg_queue,
            excluded=counts.excluded,
        )


def probe_judged(job_name: str, conclusion: str) -> str:
    """A probe job's conclusion as the probe judges it: `success` when it ended as its job
    expects, `failure` when a job expected to fail passed, else its own conclusion."""
    expected = PROBE_EXPECTATIONS.get(job_name, "success")
    if conclusion == expected:
        return "success"
    return "failure" if conclusion == "success" else conclusion


def judged(
    outcomes: Mapping[tuple[date, str, str, str], int],
) -> tuple[Counts, tuple[DailyPoint, ...]]:
    """The Counts, over all and per day (oldest first), of (day, job name, status, conclusion)
    → records, each conclusion judged as the probe judges it (probe_judged)."""
    days: dict[date, dict[tuple[str, str, str], int]] = {}
    every: dict[tuple[str, str, str], int] = {}
    for (day, job, status, conclusion), n in outcomes.items():
        key = (job, status, conclusion)
        days.setdefault(day, {})[key] = n
        every[key] = every.get(key, 0) + n
    daily = tuple(DailyPoint(day, _judged(days[day])) for day in sorted(days))
    return _judged(every), daily


def _judged(outcomes: Mapping[tuple[str, str, str], int]) -> Counts:
    tally = dict.fromkeys(("successes", "failures", "timed_out", "cancelled", "completed"), 0)
    running = 0
    for (job, status, conclusion), n in outcomes.items():
        if status != "completed":
            running += n
            continue
        tally["completed"] += n
        judged = probe_judged(job, conclusion)
        name = {"success": "successes", "timed_out": "timed_out", "cancelled": "cancelled"}.get(
            judged, "failures" if judged in FAILURES else ""
        )
        if name:
            tally[name] += n
    return Counts(**tally, in_progress=running)


@dataclass(frozen=True)
class ProbeRun:
    """One probe run (a PR head, or a nightly SHA): its jobs' latest attempts, judged."""

    pr_number: int
    head_sha: str
    last_at: datetime
    jobs: int
    as_expected: int  # completed as the job expects
    running: int

    @property
    def state(self) -> str:
        """as_expected, unexpected, or running (nothing unexpected yet, not finished)."""
        if self.as_expected + self.running < self.jobs:
            return "unexpected"
        return "running" if self.running else "as_expected"


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class ProbeLine:
    """The newest probe runs of one tab, newest first, and what they say."""

    kind: Kind
    runs: tuple[ProbeRun, ...]
    judged: int  # runs that finished, of `runs`
    as_expected: int  # of `judged`
    running: int  # runs not finished, with nothing unexpected yet: not judged
    health: Health

    @classmethod
    def of(cls, kind: Kind, runs: Sequence[ProbeRun]) -> "ProbeLine":
        done = [run for run in runs if run.state != "running"]
        good = sum(run.state == "as_expected" for run in done)
        health = (
            Health.NO_DATA if not done else Health.HEALTHY if good == len(done) else Health.DEGRADED
        )
        return cls(kind, tuple(runs), len(done), good, len(runs) - len(done), health)


@dataclass(frozen=True)
class ProbeHealth:
    """The relay-health card: the probe's newest PR runs and nightlies against what its jobs
    expect (Degraded when one of them did not end so), and whether it is overdue."""

    repo: str  # as the allowlist spells it
    key: str
    lines: tuple[ProbeLine, ...]  # PR / push, then nightly
    health: Health  # degraded if a line is; healthy if one is; else no data
    last_run: datetime | None
    overdue: bool  # results, but none for longer than overdue_after
    overdue_after: int  # seconds

    @classmethod
    def of(
        cls, repo: str, key: str, lines: Sequence[ProbeLine], *, now: datetime, overdue_after: int
    ) -> "ProbeHealth":
        states = {line.health for line in lines}
        health = (
            Health.DEGRADED
            if Health.DEGRADED in states
            else Health.HEALTHY
            if Health.HEALTHY in states
            else Health.NO_DATA
        )
        last = max((run.last_at for line in lines for run in line.runs), default=None)
        overdue = last is not None and (now - last).total_seconds() > overdue_after
        return cls(repo, key, tuple(lines), health, last, overdue, overdue_after)


@dataclass(frozen=True)
class StaleJob:
    """A job of the relay's that reported in_progress and nothing since (the zombie sweep)."""

    downstream_repo: str
    delivery_id: str
    workflow_name: str
    job_name: str
    check_run_id: str
    repo_display: str
    run_id: str
    run_attempt: int
    updated_at: datetime


@dataclass(frozen=True)
class HeadRun:
    """One downstream run (a GitHub Actions run id) of a repo on an upstream head SHA."""

    run_id: str
    failed: bool  # its latest attempt has a job to re-run


def head_runs(records: Iterable[Sequence[Any]]) -> list[HeadRun]:
    """The runs among (run_id, run_attempt, status, conclusion) records, by run id."""
    latest: dict[str, tuple[int, bool]] = {}
    for run_id, attempt, status, conclusion in records:
        failed = status == "completed" and conclusion in RERUNNABLE
        seen, was_failed = latest.get(run_id, (0, False))
        if attempt > seen:
            latest[run_id] = (attempt, failed)
        elif attempt == seen:
            latest[run_id] = (attempt, was_failed or failed)
    return [HeadRun(run_id, failed) for run_id, (_, failed) in sorted(latest.items())]


@dataclass(frozen=True)
class PrActivity:
    """An upstream PR in the recent-PRs list: when a record of it was last received."""

    number: int
    last_at: datetime


class Mark(StrEnum):
    """One repo's result on a PR's latest head, as the PR list's strip shows it."""

    RED = "red"  # a job failed or timed out
    PENDING = "pending"  # none failed, one is still running
    GREEN = "green"  # every job passed
    NEUTRAL = "neutral"  # none failed or runs, not all passed (cancelled)


@dataclass(frozen=True)
class RepoMark:
    """A downstream repo's jobs (latest attempts) on a PR's latest head."""

    key: str
    repo: str  # as its newest record on the head spells it
    counts: Counts

    @property
    def mark(self) -> Mark:
        if self.counts.failures or self.counts.timed_out:
            return Mark.RED
        if self.counts.in_progress:
            return Mark.PENDING
        if self.counts.successes == self.counts.completed:
            return Mark.GREEN
        return Mark.NEUTRAL


@dataclass(frozen=True)
class PrHead:
    """A PR's latest head (the head SHA of its newest PR/push record) and the repos that
    reported on it, by name."""

    number: int
    head_sha: str
    marks: tuple[RepoMark, ...]


def pr_heads_of(rows: Iterable[Sequence[Any]]) -> dict[int, PrHead]:
    """PrHeads from (PR number, head SHA, repo key, repo name, *the six counts) rows."""
    found: dict[int, tuple[str, list[RepoMark]]] = {}
    for number, sha, key, repo, *counts in rows:
        head = found.setdefault(int(number), (sha, []))
        head[1].append(RepoMark(key, repo, Counts(*(int(c or 0) for c in counts))))
    return {
        number: PrHead(number, sha, tuple(sorted(marks, key=lambda m: m.repo.casefold())))
        for number, (sha, marks) in found.items()
    }
