"""The storage contract every HUD backend implements, as Django's session backends have theirs.

`HUD_STORE` is the dotted path of the backend class, set from `HUD_BACKEND`: the ORM one
(`hud.storage.orm`, PostgreSQL or SQLite) by default, or ClickHouse (`hud.storage.clickhouse`).
The contract speaks in HUD terms only: records, keys, and what the pages read. Every backend
keeps contract §3's semantics: one row per key, and a later record for the same key changes
only the fields it carries (`None` is "not carried" and erases nothing), under two rules that
hold whatever order the writes commit in (`merged` states them once; the ORM backend's upsert
is the same rule in SQL):

- a record's status only moves forward: once `completed`, a record that is not completed (a
  late `in_progress`) changes no field it already has; it may only fill fields still empty;
- a record this relay verified (source `relay`) is never changed by one from elsewhere (an
  envelope of `POST /api/crcr/results`, source `ingest`).
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from crcr_site import sql
from hud.models import JobRecord
from hud.records import Workflow
from hud.reports import (
    EVERY_HEAD,
    DailyPoint,
    DailyTimes,
    HeadRun,
    JobStats,
    Kind,
    MainResult,
    MatrixPage,
    PrActivity,
    PrHead,
    PrJob,
    PrView,
    ReadinessMetrics,
    RecentRuns,
    RepoSummary,
    StaleJob,
    TabCount,
    Window,
    WindowFigures,
)

KEY_FIELDS = ("downstream_repo", "delivery_id", "workflow_name", "job_name", "check_run_id")


@dataclass(frozen=True)
class RecordKey:
    downstream_repo: str  # casefolded owner/name
    delivery_id: str
    workflow_name: str
    job_name: str
    check_run_id: str


@dataclass
class HudRecord:
    """One record to store; every field but the key may be None (not carried)."""

    key: RecordKey
    repo_display: str
    source: str = JobRecord.Source.RELAY
    upstream_repo: str | None = None
    event_type: str | None = None
    level: str | None = None
    pr_number: int | None = None
    head_sha: str | None = None
    workflow_run_url: str | None = None
    run_id: str | None = None
    run_attempt: int | None = None
    status: str | None = None
    conclusion: str | None = None
    queue_time: float | None = None
    execution_time: float | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    tests_passed: int | None = None
    tests_failed: int | None = None
    tests_skipped: int | None = None
    tests_total: int | None = None
    failed_tests_detail: list[dict[str, str]] | None = None
    artifact_url: str | None = None
    triage_verdict: dict[str, Any] | None = None

    def carried(self) -> dict[str, Any]:
        """The fields this record sets: everything not None, but the key."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "key"}
        return {name: value for name, value in values.items() if value is not None}


def workflow_fields(workflow: Workflow) -> dict[str, Any]:
    """What a callback's `workflow` sets on its record; completion fields only when completed."""
    completed = workflow.status == "completed"
    tests = (workflow.test_results or {}) if completed else {}
    return {
        "workflow_run_url": workflow.url,
        "run_id": workflow.run_id,
        "run_attempt": workflow.run_attempt,
        "status": workflow.status,
        "conclusion": workflow.conclusion if completed else None,
        "started_at": workflow.started_at,
        "completed_at": workflow.completed_at if completed else None,
        "tests_passed": tests.get("passed"),
        "tests_failed": tests.get("failed"),
        "tests_skipped": tests.get("skipped"),
        "tests_total": tests.get("total"),
        "failed_tests_detail": workflow.failed_tests_detail,
        "artifact_url": workflow.artifact_url,
        "triage_verdict": workflow.triage_verdict,
    }


COMPLETED = "completed"


def is_late(stored_status: object, incoming_status: object) -> bool:
    """Whether a record arrives after its key has completed without completing it itself."""
    return stored_status == COMPLETED and incoming_status != COMPLETED


def may_change(stored_source: object, incoming_source: object) -> bool:
    """Whether a record from `incoming_source` may change one stored from `stored_source`."""
    relay = JobRecord.Source.RELAY
    return not (stored_source == relay and incoming_source != relay)


def merged(stored: dict[str, Any], carried: dict[str, Any]) -> dict[str, Any] | None:
    """The stored row with a record's carried fields applied, by the rules above; None when
    the record may not change it."""
    if not may_change(stored.get("source"), carried.get("source", JobRecord.Source.RELAY)):
        return None
    if not is_late(stored.get("status"), carried.get("status")):
        return stored | carried
    empty = {name: value for name, value in carried.items() if stored.get(name) in (None, "")}
    return stored | empty


@dataclass(frozen=True)
class StoredJob:
    """What the store holds of one record: enough to restore a job's state and to tell a
    repeated callback from a new one."""

    status: str
    conclusion: str
    run_id: str
    run_attempt: int
    source: str
    received_at: datetime
    updated_at: datetime


STORED_JOB_FIELDS = tuple(f.name for f in fields(StoredJob))


class RecordExists(Exception):
    pass


class StoreUnavailable(Exception):
    """The backend could not be reached or failed; the pages answer 503."""


class RecordStore:
    """The storage contract every HUD backend implements."""

    def upsert(self, record: HudRecord, *, now: datetime) -> bool:
        """Insert the record, or update only the fields it carries (by `merged`'s rules);
        False when a stored record this one may not change has its key."""
        raise NotImplementedError

    def upsert_guarded(
        self,
        record: HudRecord,
        *,
        now: datetime,
        guard: sql.Row,
        alongside: Sequence[sql.Row] = (),
        only_if: sql.Condition | None = None,
    ) -> bool:
        """Insert `guard` (the caller's once-only row); only if it was new (and `only_if`
        holds), upsert the record by `merged`'s rules and insert the caller's `alongside` rows,
        all or nothing in one statement; True when it was new."""
        raise NotImplementedError

    def stored_job(self, key: RecordKey) -> StoredJob | None:
        """What is stored (committed) under `key`, if anything."""
        raise NotImplementedError

    def insert_new(self, record: HudRecord, *, now: datetime) -> None:
        """Insert the record; RecordExists when its key is already stored (written once)."""
        raise NotImplementedError

    def put_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        """Store whole rows as they are, received_at and updated_at included; how many."""
        raise NotImplementedError

    def rows(self) -> Iterator[dict[str, Any]]:
        """Every stored record as a whole row (field → value)."""
        raise NotImplementedError

    # The read side: hud/reports.py states the semantics every backend keeps.

    def summary(
        self,
        window: Window,
        kind: Kind,
        *,
        exclude: Sequence[str] = (),
        only: str | None = None,
        measured: bool = True,
        without_upstream: bool = False,
        overview: bool = False,
    ) -> list[RepoSummary]:
        """Per repo (or `only` one) over the window, with its daily series; worst first.
        `measured=False` leaves the times and the PR count out (None and 0: not read), for a
        page that shows none of them; `overview` reads only the measures /crcr shows
        (reports.overview_measured); `without_upstream` counts without the failures triaged
        upstream (hud/reports.py), in the daily series too."""
        raise NotImplementedError

    def window_figures(
        self,
        window: Window,
        kind: Kind,
        *,
        exclude: Sequence[str] = (),
        measured: bool = True,
        times: bool = False,
        without_upstream: bool = False,
        heard_from: Sequence[str] = (),
        overview: bool = False,
    ) -> WindowFigures:
        """summary(), tab_counts() and, with `times`, daily_times() over one window with the
        same repos left out, and last_heard() of the `heard_from` repos (left out or not)
        since the window's start, as those would answer; one read where the backend can make
        it one (ClickHouse: every statement costs milliseconds before it reads a row)."""
        return WindowFigures(
            self.summary(
                window,
                kind,
                exclude=exclude,
                measured=measured,
                without_upstream=without_upstream,
                overview=overview,
            ),
            self.tab_counts(window, exclude=exclude),
            self.daily_times(window, kind, exclude=exclude) if times else {},
            self.last_heard(heard_from, since=window.start),
        )

    def daily(
        self,
        window: Window,
        kind: Kind,
        *,
        exclude: Sequence[str] = (),
        only: str | None = None,
        without_upstream: bool = False,
    ) -> dict[str, tuple[DailyPoint, ...]]:
        """Per repo key, the counts of each day of the window that has records, oldest first
        (`without_upstream`: without the failures triaged upstream)."""
        raise NotImplementedError

    def tab_counts(
        self, window: Window, *, exclude: Sequence[str] = (), only: str | None = None
    ) -> tuple[TabCount, ...]:
        """Each tab's count over the window, in the tabs' order (hud/reports.py TabCount): the
        repos (or `only` one) with records received in it, and how many records."""
        raise NotImplementedError

    def daily_times(
        self, window: Window, kind: Kind, *, exclude: Sequence[str] = ()
    ) -> dict[str, tuple[DailyTimes, ...]]:
        """Per repo key, p50 and p90 of queue and execution time on each day of the window that
        has records, oldest first (the metrics page's time charts)."""
        raise NotImplementedError

    def pr_jobs(
        self, number: int, *, exclude: Sequence[str] = ()
    ) -> dict[str, dict[str, tuple[PrJob, ...]]]:
        """Repo key → head SHA → the latest attempt of each of its jobs on that head of PR
        `number` (by workflow, then job): every job, not only the failing ones."""
        return self.pr_with_jobs(number, exclude=exclude)[1]

    def main_results(
        self, repo_keys: Sequence[str], jobs: Sequence[str], shas: Sequence[str], window: Window
    ) -> list[MainResult]:
        """The latest attempt of each of `jobs` of each repo on the upstream's main within the
        window (pushes of one of `shas`, nightly and periodic runs), newest first: one read
        for every repo a PR page or comment asks about (hud/baseline.py)."""
        raise NotImplementedError

    def job_stats(self, repo_key: str, window: Window, kind: Kind) -> list[JobStats]:
        """Each job of the repo over the window: heads run, failed and flaky (reports.JobStats),
        by job name."""
        raise NotImplementedError

    def recent_runs(self, repo_key: str, window: Window, *, per_kind: int) -> RecentRuns:
        """Each tab's newest `per_kind` matrix rows of a repo over the window, cells and all,
        as matrix() gives its first page; one read where the backend can make it one."""
        pages = {kind: self.matrix(repo_key, window, kind, per_page=per_kind) for kind in Kind}
        named = [page.repo for page in pages.values() if page.rows]
        return RecentRuns(named[-1] if named else "", {k: p.rows for k, p in pages.items()})

    def matrix(
        self,
        repo_key: str,
        window: Window,
        kind: Kind,
        *,
        outcome: str | None = None,
        pr: int | None = None,
        page: int = 1,
        per_page: int = 25,
    ) -> MatrixPage:
        """One page of a repo's row x job matrix, rows filtered by a cell outcome or a PR."""
        raise NotImplementedError

    def pr(self, number: int, *, exclude: Sequence[str] = ()) -> PrView:
        """One upstream PR across every downstream repo, all time; red repos first."""
        return self.pr_with_jobs(number, exclude=exclude)[0]

    def pr_with_jobs(
        self, number: int, *, exclude: Sequence[str] = (), jobs_on: str = EVERY_HEAD
    ) -> tuple[PrView, dict[str, dict[str, tuple[PrJob, ...]]]]:
        """`pr` and `pr_jobs` together, from one read of the PR's jobs' latest attempts
        (hud/reports.py pr_of_latest): the PR page's one read. The jobs are those of the heads
        `jobs_on` names (reports.EVERY_HEAD, LATEST_HEAD or a head SHA)."""
        raise NotImplementedError

    def readiness(
        self, repo_key: str, window: Window, *, without_upstream: bool = False
    ) -> ReadinessMetrics:
        """What the level criteria measure for one repo's PR/push results (`without_upstream`:
        counting without the failures triaged upstream)."""
        raise NotImplementedError

    def readiness_over(
        self, repo_key: str, windows: Sequence[Window], *, without_upstream: bool = False
    ) -> list[ReadinessMetrics]:
        """`readiness` for several windows ending together (a backend may read once)."""
        return [
            self.readiness(repo_key, window, without_upstream=without_upstream)
            for window in windows
        ]

    def repo_overview(
        self,
        repo_key: str,
        window: Window,
        kind: Kind,
        readiness_windows: Sequence[Window],
        *,
        without_upstream: bool = False,
        heard_from: Sequence[str] = (),
    ) -> tuple[RepoSummary | None, list[ReadinessMetrics], tuple[TabCount, ...], set[str]]:
        """A repo's summary over `window`, its readiness over each of `readiness_windows`, its
        tabs' counts over `window`, and which of the `heard_from` delivery ids it sent a record
        for in `window` (the repo page's figures and silent dispatches; a backend may read
        once)."""
        summary = next(
            iter(self.summary(window, kind, only=repo_key, without_upstream=without_upstream)),
            None,
        )
        readiness = self.readiness_over(
            repo_key, readiness_windows, without_upstream=without_upstream
        )
        asked = [(repo_key, delivery) for delivery in heard_from]
        heard = {delivery for _, delivery in self.heard_from(asked, since=window.start)}
        return summary, readiness, self.tab_counts(window, only=repo_key), heard

    def in_progress_since(self, cutoff: datetime, limit: int) -> list[StaleJob]:
        """The relay's jobs still in progress and unchanged since `cutoff`, oldest first."""
        raise NotImplementedError

    def outcomes(
        self, repo_key: str, window: Window, kind: Kind
    ) -> dict[tuple[date, str, str, str], int]:
        """A repo's records over the window by (UTC day received, job name, status,
        conclusion): what the probe's figures are judged from (hud/reports.py judged)."""
        raise NotImplementedError

    def newest(self) -> datetime | None:
        """When the newest record was received (the pages' "data as of")."""
        raise NotImplementedError

    def first_seen(self, repo_key: str) -> datetime | None:
        """When a repo's first record was received."""
        raise NotImplementedError

    def runs_on_head(self, repo_key: str, head_sha: str, *, since: datetime) -> list[HeadRun]:
        """A repo's downstream runs on a head SHA among the records received since `since`,
        each failed or not (hud/reports.py), by run id."""
        raise NotImplementedError

    def recent_prs(
        self,
        window: Window,
        *,
        limit: int,
        numbers: Sequence[int] | None = None,
        sha: str | None = None,
        exclude: Sequence[str] = (),
    ) -> list[PrActivity]:
        """The `limit` upstream PRs (number > 0) whose newest PR/push record was received
        latest in the window, newest first (then the higher number); given `numbers` or `sha`,
        only the PRs among `numbers` or with a record whose head SHA starts with `sha`."""
        raise NotImplementedError

    def pr_heads(self, numbers: Sequence[int], *, exclude: Sequence[str] = ()) -> dict[int, PrHead]:
        """Each PR's latest head (the head SHA of its newest PR/push record, all time) with
        the counts of each repo's jobs there (latest attempts), for the PRs with records."""
        raise NotImplementedError

    def heard_from(
        self,
        pairs: Iterable[tuple[str, str]],
        *,
        since: datetime | None = None,
        pr_number: int | None = None,
    ) -> set[tuple[str, str]]:
        """Of the (repo key, delivery id) pairs, those with at least one stored record (one
        received since `since`, and of PR `pr_number`, if given: bounds the caller knows, a
        record answering a dispatch has its PR, so that only those records are read)."""
        raise NotImplementedError

    def last_heard(self, repo_keys: Sequence[str], *, since: datetime) -> dict[str, datetime]:
        """Per repo key among `repo_keys`, when its newest record was received, for the repos
        with one received since `since`."""
        raise NotImplementedError


def get_store() -> "RecordStore":
    store: RecordStore = import_string(settings.HUD_STORE)()
    return store
