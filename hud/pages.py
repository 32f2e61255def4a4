"""What each HUD page (and its JSON twin) shows, assembled from the store and the allowlist.

Views parse the query with `Query.parse` and call one function here; nothing here touches HTTP.
"""

import functools
import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.utils import timezone

from allowlist import lookup
from allowlist.entry import CAPABILITIES, Capabilities, Entry, Level
from allowlist.models import Change, DownstreamRepo
from hud import baseline
from hud.models import JobRecord, LevelProposal, UpstreamCommit, UpstreamPull
from hud.reports import (
    DAYS,
    DEFAULT_DAYS,
    EVERY_HEAD,
    LATEST_HEAD,
    OUTCOMES,
    PROBE_EXPECTATIONS,
    RED,
    WITHOUT_UPSTREAM,
    Cell,
    DailyPoint,
    DailyTimes,
    JobStats,
    Kind,
    MatrixPage,
    MatrixRow,
    PrJob,
    ProbeHealth,
    ProbeLine,
    ProbeRun,
    PrView,
    ReadinessMetrics,
    RepoSummary,
    TabCount,
    Window,
    judged,
    probe_judged,
)
from hud.silent import (
    SilentRepo,
    Unanswered,
    dispatched_since,
    of_pr,
    repo_dispatches,
    silent_repos,
    unanswered_of,
)
from hud.storage import RecordStore, get_store
from hud.templatetags.hud import duration, percent


class BadQuery(ValueError):
    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"{parameter}: {detail}")
        self.parameter = parameter


@dataclass(frozen=True)
class Query:
    """The pages' query string, validated: days, tab, the matrix's filters, and the triage
    toggle (`triage=exclude-upstream`: pass rates and readiness without the failures triaged
    upstream, hud/reports.py)."""

    days: int = DEFAULT_DAYS
    kind: Kind = Kind.PR
    outcome: str | None = None
    pr: int | None = None
    page: int = 1
    shards: bool = False  # true: every shard in its own column
    without_upstream: bool = False  # the triage toggle, off by default

    @classmethod
    def parse(cls, params: Mapping[str, str], *, strict: bool = False) -> "Query":
        """The query of `params`; an empty value is the default (as the pages' GET form sends
        what is not chosen), or, `strict` (the JSON API, as its schema says), a BadQuery."""
        if strict:
            given_once(params, QUERY_NAMES)
        days = window_days(params)
        kind = params.get("tab") or Kind.PR.value
        if kind not in {k.value for k in Kind}:
            raise BadQuery("tab", "must be pr or nightly")
        outcome = params.get("conclusion") or None
        if outcome is not None and outcome not in OUTCOMES:
            raise BadQuery("conclusion", f"must be one of {', '.join(OUTCOMES)}")
        pr = _int(params, "pr", 0) or None
        page = _int(params, "page", 1)
        if page < 1:
            raise BadQuery("page", "must be 1 or more")
        shards = params.get("shards") or None
        if shards not in (None, "all"):
            raise BadQuery("shards", "must be all")
        triage = params.get("triage") or None
        if triage not in (None, WITHOUT_UPSTREAM):
            raise BadQuery("triage", f"must be {WITHOUT_UPSTREAM}")
        return cls(days, Kind(kind), outcome, pr, page, shards == "all", triage is not None)

    def window(self, now: datetime | None = None) -> Window:
        return Window(self.days, now or timezone.now())


QUERY_NAMES = ("days", "tab", "conclusion", "pr", "page", "shards", "triage")
# The largest number a query parameter takes (nine digits; the API's schema says so too).
INT_PARAM_MAX = 999_999_999


def given_once(params: Mapping[str, str], names: Sequence[str]) -> None:
    """The JSON API's rule (its schema says so): each parameter not empty, and given once."""
    for name in names:
        if params.get(name, None) == "":
            raise BadQuery(name, "must not be empty (leave it out for the default)")
        getlist = getattr(params, "getlist", None)
        if getlist is not None and len(getlist(name)) > 1:
            raise BadQuery(name, "must be given once")


def window_days(params: Mapping[str, str]) -> int:
    """`days`, one of the windows (DAYS)."""
    days = _int(params, "days", DEFAULT_DAYS)
    if days not in DAYS:
        raise BadQuery("days", f"must be one of {', '.join(map(str, DAYS))}")
    return days


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    if not re.fullmatch(r"[0-9]{1,9}", str(raw)):
        raise BadQuery(name, f"must be a whole number from 0 to {INT_PARAM_MAX}")
    return int(str(raw))


def allowlisted(key: str, shown: str, entries: Mapping[str, Entry]) -> str:
    """A repo's name as the allowlist spells it; `shown` (its records' spelling) when it is
    not listed."""
    entry = entries.get(key)
    return entry.repo if entry is not None else shown


def _listed() -> dict[str, Entry]:
    return {entry.key: entry for entry in lookup.snapshot().entries}


def probe_key() -> str:
    return settings.CRCR_PROBE_REPO.casefold()


# -- /crcr -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chip:
    """An open level proposal, as /crcr marks its repo."""

    direction: str  # promote, demote
    to_level: str


@dataclass(frozen=True)
class Marks:
    """What /crcr marks a repo with: its open level proposals, a temporary demotion."""

    proposals: tuple[Chip, ...] = ()
    suspended: bool = False


@dataclass(frozen=True)
class RepoLine:
    summary: RepoSummary
    listed: bool  # on the allowlist now
    marks: Marks = Marks()


@dataclass(frozen=True)
class Registered:
    """An allowlisted repo, as the overview lists it under its level."""

    repo: str
    device: str
    oncalls: tuple[str, ...]
    events: tuple[str, ...]
    marks: Marks = Marks()


@dataclass(frozen=True)
class LevelBlock:
    level: Level
    capabilities: Capabilities
    registered: tuple[Registered, ...]  # the allowlisted repos at this level
    lines: tuple[RepoLine, ...]

    @property
    def has_other(self) -> bool:
        """Whether a line has completed jobs of another conclusion (the table's Other column:
        without one, successes to cancelled sum to the total alone)."""
        return any(line.summary.counts.other for line in self.lines)


@dataclass(frozen=True)
class Overview:
    query: Query
    window: Window
    registered: int
    blocks: tuple[LevelBlock, ...]
    probe: ProbeHealth
    as_of: datetime | None
    silent: tuple[SilentRepo, ...] = ()
    tabs: tuple[TabCount, ...] = ()  # each tab's repos reporting (the probe left out)

    @property
    def excluded(self) -> int:
        """The failures triaged upstream the tables leave out (the triage toggle)."""
        return sum(line.summary.counts.excluded for block in self.blocks for line in block.lines)


def overview(
    query: Query, store: RecordStore | None = None, *, every_measure: bool = True
) -> Overview:
    """/crcr's data. `every_measure=False` (the HTML page) reads only the measures the page
    shows (reports.overview_measured); its JSON twin has them all."""
    store = store or get_store()
    window = query.window()
    probe = probe_key()
    entries = lookup.snapshot().entries
    listed = {entry.key: entry for entry in entries}
    marks = _marks(entries)
    by_level: dict[str, list[RepoLine]] = {}
    dispatched = dispatched_since(window.start, window.end)
    figures = store.window_figures(
        window,
        query.kind,
        exclude=[probe],
        without_upstream=query.without_upstream,
        heard_from=sorted(dispatched),
        overview=not every_measure,
    )
    for summary in figures.summaries:
        entry = listed.get(summary.key)
        summary = replace(summary, repo=allowlisted(summary.key, summary.repo, listed))
        # Not on the allowlist: under the level it reported, else L2, the lowest level whose
        # results the HUD shows (an envelope from another relay may carry no level).
        level = entry.level.value if entry else (summary.level or Level.L2.value)
        line = RepoLine(summary, entry is not None, marks.get(summary.key, Marks()))
        by_level.setdefault(level, []).append(line)
    blocks = tuple(
        LevelBlock(
            level,
            CAPABILITIES[level],
            tuple(
                Registered(
                    e.repo, e.device, e.oncalls, tuple(e.sorted_events()), marks.get(e.key, Marks())
                )
                for e in entries
                if e.level == level
            ),
            tuple(by_level.get(level.value, ())),
        )
        for level in sorted(Level, key=lambda level: -level.rank)
    )
    as_of = store.newest()
    quiet = silent_repos(store, window.start, window.end, newest=dispatched, heard=figures.heard)
    health = probe_health(store, window.end, listed)
    return Overview(query, window, len(entries), blocks, health, as_of, quiet, figures.tabs)


def probe_health(
    store: RecordStore, now: datetime, listed: Mapping[str, Entry] | None = None
) -> ProbeHealth:
    """The relay-health card: the probe's newest CRCR_PROBE_RUNS finished PR runs and nightlies
    (within the longest window), and any newer still going, whatever the page's window; each
    run judged by its jobs' latest attempts."""
    key = probe_key()
    listed = _listed() if listed is None else listed
    widest = Window(max(DAYS), now)
    lines, name = [], settings.CRCR_PROBE_REPO
    wanted = settings.CRCR_PROBE_RUNS
    # Twice as many rows as judged: runs still going (nothing unexpected yet) take none of
    # the judged places.
    recent = store.recent_runs(key, widest, per_kind=2 * wanted)
    for kind in Kind:
        runs: list[ProbeRun] = []
        for run in map(_probe_run, recent.rows[kind]):
            if sum(r.state != "running" for r in runs) == wanted:
                break
            runs.append(run)
        lines.append(ProbeLine.of(kind, runs))
    name = recent.repo or name
    return ProbeHealth.of(
        allowlisted(key, name, listed),
        key,
        lines,
        now=now,
        overdue_after=settings.CRCR_PROBE_OVERDUE,
    )


def _probe_run(row: MatrixRow) -> ProbeRun:
    cells = row.cells.values()
    done = [cell for cell in cells if cell.status == "completed"]
    expected = sum(probe_judged(cell.job_name, cell.conclusion) == "success" for cell in done)
    return ProbeRun(
        row.pr_number,
        row.head_sha,
        row.last_at,
        len(row.cells),
        expected,
        len(row.cells) - len(done),
    )


def _marks(entries: tuple[Entry, ...]) -> dict[str, Marks]:
    """Repo key -> its marks, for the repos that have any (one query)."""
    chips: dict[str, list[Chip]] = {}
    found = LevelProposal.objects.filter(state=LevelProposal.State.OPEN).order_by("direction")
    for key, direction, to_level in found.values_list("repo_key", "direction", "to_level"):
        chips.setdefault(key, []).append(Chip(direction, to_level))
    suspended = {entry.key for entry in entries if entry.suspended}
    return {key: Marks(tuple(chips.get(key, ())), key in suspended) for key in {*chips, *suspended}}


# -- /crcr/{org}/{repo} ------------------------------------------------------------------------

WORST_FIRST = ("failure", "startup_failure", "timed_out", "cancelled", "in_progress", "success")


@dataclass(frozen=True)
class Column:
    label: str
    jobs: tuple[str, ...]

    @property
    def family(self) -> bool:
        return len(self.jobs) > 1


@dataclass(frozen=True)
class ShownCell:
    """What one matrix cell shows: a job's cell, or a shard family's worst one."""

    cell: Cell
    passed: int = 1  # shards that succeeded (on the probe's page: ended as expected)
    of: int = 1  # shards reported
    flaky: bool = False  # a job of it failed and passed on this head (JobStats)
    on_main_since: str = ""  # red, and red on main too since this SHA (hud/baseline.py)
    expected: str = ""  # on the probe's page: the conclusion its job expects


@dataclass(frozen=True)
class ShownRow:
    row: MatrixRow
    cells: tuple[ShownCell | None, ...]
    title: str = ""
    author: str = ""


@dataclass(frozen=True)
class Criterion:
    name: str
    threshold: str
    promotion: float | None  # measured over the promotion window
    demotion: float | None  # over the demotion window
    promotion_met: bool
    demotion_met: bool
    unit: str = "rate"  # how its figures read: rate, seconds, days
    demotes: bool = True  # failing it over the demotion window proposes a demotion


class Verdict(StrEnum):
    READY = "ready"  # every criterion met: level automation proposes the target level
    MEETS = "meets"  # keeps its level; not (yet) ready for the next
    AT_RISK = "at_risk"  # a demotion criterion fails: level automation proposes a demotion
    NO_DATA = "no_data"  # a criterion has nothing measured (and no demotion follows)
    NOT_APPLICABLE = "not_applicable"  # level automation leaves the repo out


@dataclass(frozen=True)
class Readiness:
    promotion_days: int
    demotion_days: int
    level: str  # the level the repo is at, whose days a promotion waits for
    days_at_level: int | None
    criteria: tuple[Criterion, ...]
    target: str = ""  # the next level up; "" at L4 (only the demotion criteria then)
    verdict: Verdict = Verdict.NOT_APPLICABLE
    summary: str = ""  # the verdict in one line, for people
    excluded: int = 0  # failures triaged upstream left out over the promotion window (toggle)


@dataclass(frozen=True)
class Figure:
    """One criterion as a proposal recorded it."""

    name: str
    needs: str
    value: float | None
    unit: str  # rate, seconds, days
    met: bool
    days: int | None  # the window it was measured over


@dataclass(frozen=True)
class Proposal:
    """A level proposal (hud/levels.py) as the repo page shows it."""

    id: int
    direction: str
    from_level: str
    to_level: str
    state: str
    reason: str
    figures: tuple[Figure, ...]
    blocker: str  # why it cannot be accepted as the allowlist stands
    opened_at: datetime
    evaluated_at: datetime
    suspended_at: datetime | None  # when it stood a temporary demotion
    closed_at: datetime | None
    closed_by: str
    exportable: bool  # its allowlist diff can be downloaded


@dataclass(frozen=True)
class Suspension:
    """A temporary demotion that stands: no new check runs or comment mentions."""

    since: datetime
    reason: str


@dataclass(frozen=True)
class Levels:
    """The repo page's level automation: open proposals, the latest closed ones, and a
    temporary demotion."""

    open: tuple[Proposal, ...]
    closed: tuple[Proposal, ...]
    suspension: Suspension | None


CLOSED_SHOWN = 5


@dataclass(frozen=True)
class RepoPage:
    key: str
    repo: str
    level: str
    listed: bool
    query: Query
    summary: RepoSummary | None
    matrix: MatrixPage
    columns: tuple[Column, ...]
    rows: tuple[ShownRow, ...]
    readiness: Readiness | None
    levels: Levels
    as_of: datetime | None
    jobs: "JobBoard | None" = None
    unanswered: tuple[Unanswered, ...] = ()
    probe: bool = False  # the probe's page: its figures count expected outcomes as passing
    tabs: tuple[TabCount, ...] = ()  # the repo's results in each tab
    # With the triage toggle on: the readiness as level automation reads it (every failure
    # counted), beside the page's; None when the page's is that one.
    automation: Readiness | None = None

    @property
    def excluded(self) -> int:
        """The failures triaged upstream the summary leaves out (the triage toggle)."""
        return self.summary.counts.excluded if self.summary is not None else 0


@dataclass(frozen=True)
class JobBoard:
    """A repo's flaky jobs (attempts that disagreed on one head) and most failing ones, over
    the page's window, each ranked worst first."""

    flaky: tuple[JobStats, ...]
    failing: tuple[JobStats, ...]

    @classmethod
    def of(cls, stats: Sequence[JobStats], *, top: int = 10) -> "JobBoard":
        flaky = sorted(
            (s for s in stats if s.flaky_heads),
            key=lambda s: (-s.flaky_heads, -s.flaky_rate, s.job_name),
        )
        failing = sorted(
            (s for s in stats if s.failed_heads),
            key=lambda s: (-s.failed_heads, -s.failure_rate, s.job_name),
        )
        return cls(tuple(flaky[:top]), tuple(failing[:top]))

    def flipped(self) -> set[tuple[str, str]]:
        """(head SHA, job) pairs whose attempts disagreed: the matrix's flaky badges."""
        return {(sha, s.job_name) for s in self.flaky for sha in s.flaky_shas}


def repo_page(key: str, query: Query, store: RecordStore | None = None) -> RepoPage | None:
    """None when the repo is neither allowlisted nor has ever reported."""
    store = store or get_store()
    key = key.casefold()
    entry = lookup.snapshot().get(key)
    if entry is None and store.first_seen(key) is None:
        return None
    window = query.window()
    toggled = query.without_upstream
    dispatches = repo_dispatches(key, window.start)
    summary, measured, tabs, heard = store.repo_overview(
        key,
        window,
        query.kind,
        readiness_windows(window.end),
        without_upstream=toggled,
        heard_from=[row.delivery_id for row in dispatches],
    )
    matrix = store.matrix(
        key,
        window,
        query.kind,
        outcome=query.outcome,
        pr=query.pr,
        page=query.page,
        per_page=settings.HUD_PAGE_SIZE,
    )
    columns = shard_columns(matrix.columns, collapse=not query.shards)
    # A PR's row is named by the PR; a push's or a nightly's by its upstream commit.
    about: dict[int | str, tuple[str, str]] = dict(_titles(matrix.rows).items())
    about |= _commit_titles(matrix.rows).items()
    probe = key == probe_key()
    # The probe's jobs are red by design (xfail, xtimeout): its flaky and failing ranking,
    # which counts red conclusions, would misread them, so its page has none.
    jobs = None if probe else JobBoard.of(store.job_stats(key, window, query.kind))
    flipped = jobs.flipped() if jobs is not None else frozenset()
    on_main = _red_on_main(store, key, matrix.rows) if query.kind == Kind.PR and not probe else {}
    rows = tuple(
        ShownRow(
            row,
            tuple(_shown(row, c, flipped, on_main, probe=probe) for c in columns),
            *about.get(row.pr_number or row.head_sha, ("", "")),
        )
        for row in matrix.rows
    )
    level = entry.level.value if entry else (summary.level if summary else "")
    ready = automated = None
    if level in ("L2", "L3", "L4"):
        promote, demote = measured
        name = entry.repo if entry else key
        ready = readiness(name, promote, demote, window.end, Level(level))
        if skipped := automation_skips(entry, key):
            ready = replace(ready, criteria=(), verdict=Verdict.NOT_APPLICABLE, summary=skipped)
        elif toggled:  # what level automation reads: every failure counted
            wide, narrow = store.readiness_over(key, readiness_windows(window.end))
            automated = readiness(name, wide, narrow, window.end, Level(level))
    repo = entry.repo if entry else (summary.repo if summary else matrix.repo)
    if summary is not None:
        summary = replace(summary, repo=repo)
        if key == probe_key():  # its expected failures pass the probe (hud/reports.py)
            counts, daily = judged(store.outcomes(key, window, query.kind))
            summary = replace(summary, counts=counts, daily=daily)
    matrix = replace(matrix, repo=repo)
    return RepoPage(
        key,
        repo,
        level,
        entry is not None,
        query,
        summary,
        matrix,
        columns,
        rows,
        ready,
        repo_levels(key, entry),
        store.newest(),
        jobs=jobs,
        unanswered=unanswered_of(dispatches, {(key, d) for d in heard}, window.end),
        probe=probe,
        tabs=tabs,
        automation=automated,
    )


def repo_levels(key: str, entry: Entry | None) -> Levels:
    """A repo's level proposals and temporary demotion."""
    found = LevelProposal.objects.filter(repo_key=key)
    opened = tuple(_proposal(p) for p in found.filter(state=LevelProposal.State.OPEN))
    closed = found.exclude(state=LevelProposal.State.OPEN)[:CLOSED_SHOWN]
    suspension = None
    if entry is not None and entry.suspended:
        row = DownstreamRepo.objects.filter(repo__iexact=entry.repo, suspended_since__isnull=False)
        held = row.values_list("suspended_since", "suspended_reason").first()
        if held is not None and held[0] is not None:
            suspension = Suspension(held[0], held[1])
    return Levels(opened, tuple(_proposal(p) for p in closed), suspension)


def _proposal(row: LevelProposal) -> Proposal:
    figures = tuple(
        Figure(
            str(f.get("name", "")),
            str(f.get("needs", "")),
            f.get("value"),
            str(f.get("unit", "")),
            bool(f.get("met")),
            f.get("days"),
        )
        for f in row.figures
        if isinstance(f, dict)
    )
    exportable = (row.state == LevelProposal.State.OPEN and not row.blocker) or (
        row.state == LevelProposal.State.ACCEPTED and bool(row.diff)
    )
    return Proposal(
        row.pk,
        row.direction,
        row.from_level,
        row.to_level,
        row.state,
        row.reason,
        figures,
        row.blocker,
        row.opened_at,
        row.evaluated_at,
        row.suspended_at,
        row.closed_at,
        row.closed_by,
        exportable,
    )


_SHARD = re.compile(r"(.+)-([1-9][0-9]*)")


def shard_columns(jobs: tuple[str, ...], *, collapse: bool) -> tuple[Column, ...]:
    """Job names as columns; `name-1` … `name-N` (N ≥ 3, no gaps) as one family column."""
    families: dict[str, dict[int, str]] = {}
    for job in jobs:
        if match := _SHARD.fullmatch(job):
            families.setdefault(match.group(1), {})[int(match.group(2))] = job
    grouped = {
        base: tuple(shards[n] for n in sorted(shards))
        for base, shards in families.items()
        if len(shards) >= 3 and sorted(shards) == list(range(1, len(shards) + 1))
    }
    columns: list[Column] = []
    placed: set[str] = set()
    for job in jobs:
        match = _SHARD.fullmatch(job)
        base = match.group(1) if match else None
        if collapse and base in grouped:
            if base not in placed:
                placed.add(base)
                columns.append(Column(f"{base}-[1-{len(grouped[base])}]", grouped[base]))
        else:
            columns.append(Column(job, (job,)))
    return tuple(columns)


def _shown(
    row: MatrixRow,
    column: Column,
    flipped: AbstractSet[tuple[str, str]] = frozenset(),
    on_main: Mapping[str, str] | None = None,
    *,
    probe: bool = False,
) -> ShownCell | None:
    cells = [row.cells[job] for job in column.jobs if job in row.cells]
    if not cells:
        return None
    flaky = any((row.head_sha, c.job_name) in flipped for c in cells)
    if probe:  # a cell is as good as its job's expectation says (hud/reports.py probe_judged)

        def as_judged(cell: Cell) -> str:
            done = cell.status == "completed"
            return probe_judged(cell.job_name, cell.conclusion) if done else cell.outcome

        worst = min(cells, key=lambda c: _badness(as_judged(c)))
        passed = sum(as_judged(c) == "success" for c in cells)
        expected = PROBE_EXPECTATIONS.get(worst.job_name, "success")
        return ShownCell(worst, passed, len(cells), flaky, expected=expected)
    worst = min(cells, key=lambda c: _badness(c.outcome))
    red = row.pr_number and worst.outcome in RED
    since = (on_main or {}).get(worst.job_name, "") if red else ""
    passed = sum(c.outcome == "success" for c in cells)
    return ShownCell(worst, passed, len(cells), flaky, since)


def _red_on_main(store: RecordStore, key: str, rows: Sequence[MatrixRow]) -> dict[str, str]:
    """Job → the main SHA since which it is red there, for the jobs red on the PR rows shown."""
    red = {job for row in rows if row.pr_number for job, c in row.cells.items() if c.outcome in RED}
    if not red:
        return {}
    now = timezone.now()
    shas = baseline.main_shas(settings.CRCR_UPSTREAM_REPO, now=now)
    return baseline.failing_on_main(store, {key: red}, shas, now=now).get(key, {})


def _badness(outcome: str) -> int:
    return WORST_FIRST.index(outcome) if outcome in WORST_FIRST else 0


ABOUT = ("number", "title", "author")


def _titles(rows: tuple[MatrixRow, ...]) -> dict[int, tuple[str, str]]:
    """PR number → (title, author), as the newest webhook of each PR said (UpstreamPull)."""
    numbers = {row.pr_number for row in rows if row.pr_number}
    if not numbers:
        return {}
    pulls = UpstreamPull.objects.filter(number__in=numbers)
    return {
        n: (title, author) for n, title, author in pulls.values_list("number", "title", "author")
    }


def _commit_titles(rows: tuple[MatrixRow, ...]) -> dict[str, tuple[str, str]]:
    """Head SHA → (title, author) of that upstream commit, as its push's webhook said."""
    shas = {row.head_sha for row in rows if row.head_sha and not row.pr_number}
    if not shas:
        return {}
    commits = UpstreamCommit.objects.filter(sha__in=shas).order_by("on_default_branch")
    # (Pushed to several branches: the default branch's push is read last, so it names it.)
    named = commits.values_list("sha", "title", "author")
    return {sha: (title, author) for sha, title, author in named}


def readiness_windows(now: datetime) -> list[Window]:
    """The promotion window, then the demotion window, both ending now."""
    return [
        Window(settings.HUD_READY_PROMOTION_DAYS, now),
        Window(settings.HUD_READY_DEMOTION_DAYS, now),
    ]


def readiness(
    repo: str,
    promote: ReadinessMetrics,
    demote: ReadinessMetrics,
    now: datetime,
    level: Level = Level.L2,
) -> Readiness:
    """The criteria against what the two windows measured, and the days since the allowlist
    change log put the repo at `level` (edits that kept its level do not count)."""
    since = (
        Change.objects.filter(repo__iexact=repo, new_level=level)
        .exclude(old_level=level)
        .order_by("-at")
        .values_list("at", flat=True)
        .first()
    )
    days_at_level = (now - since) // timedelta(days=1) if since else None
    criteria = tuple(_criteria(promote, demote, level, days_at_level))
    verdict, summary = judge(level, criteria, settings.HUD_READY_DEMOTION_DAYS)
    higher = level.step(+1)
    return Readiness(
        settings.HUD_READY_PROMOTION_DAYS,
        settings.HUD_READY_DEMOTION_DAYS,
        level.value,
        days_at_level,
        criteria,
        higher.value if higher else "",
        verdict,
        summary,
        promote.excluded,
    )


def figure(value: float | None, unit: str) -> str:
    """A criterion's figure as the HUD reads it."""
    if value is None:
        return "no data"
    if unit == "rate":
        return percent(value)
    return f"{value:.0f}" if unit == "days" else duration(value)


def _said(criterion: Criterion, *, promotion: bool, days: int | None = None) -> str:
    value = criterion.promotion if promotion else criterion.demotion
    over = f" over {days} days" if days and criterion.unit != "days" else ""
    return f"{criterion.name} {figure(value, criterion.unit)} (needs {criterion.threshold}){over}"


def judge(level: Level, criteria: tuple[Criterion, ...], demotion_days: int) -> tuple[Verdict, str]:
    """What the criteria say at `level`, and why, in one line: the same reading level
    automation (hud/levels.py `decide`) proposes from. A failing demotion criterion (nothing
    measured is failing) puts an L3 or L4 repo at risk of demotion and holds any promotion
    back; every criterion met over the promotion window makes it ready for the next level."""
    lower, higher = level.step(-1), level.step(+1)
    failing = [c for c in criteria if c.demotes and not c.demotion_met]
    if failing:
        why = "; ".join(_said(c, promotion=False, days=demotion_days) for c in failing)
        if lower is not None and lower.rank >= 2:
            return Verdict.AT_RISK, f"At risk of demotion to {lower.value}: {why}"
        if all(c.demotion is None for c in failing):
            return Verdict.NO_DATA, f"Not enough data: {why}"
        next_up = higher.value if higher else "a promotion"
        return Verdict.MEETS, f"Meets {level.value}; not ready for {next_up}: {why}"
    if higher is None:
        return Verdict.MEETS, f"Meets {level.value} (the highest level)"
    unmet = [c for c in criteria if not c.promotion_met]
    if not unmet:
        return Verdict.READY, f"Ready for {higher.value}: every criterion met"
    why = "; ".join(_said(c, promotion=True, days=settings.HUD_READY_PROMOTION_DAYS) for c in unmet)
    if all(c.promotion is None for c in unmet):
        return Verdict.NO_DATA, f"Not enough data for {higher.value}: {why}"
    return Verdict.MEETS, f"Meets {level.value}; not yet ready for {higher.value}: {why}"


def automation_skips(entry: Entry | None, key: str) -> str:
    """Why level automation leaves a repo out ("" when it measures it): it measures the PR
    and push results of allowlisted L2+ repos, the probe left out."""
    if key == probe_key():
        return "Not applicable: the probe tests the relay itself; level automation leaves it out"
    if entry is None:
        return "Not applicable: not on the allowlist, so level automation leaves it out"
    if entry.level.rank < 2:
        return f"Not applicable: {entry.level.value} repos are not measured"
    if not entry.takes_part_in("pull_request"):
        return (
            "Not applicable: level automation measures PR and push results, and this repo "
            "takes part in nightly runs only"
        )
    return ""


def _criteria(
    promote: ReadinessMetrics, demote: ReadinessMetrics, level: Level, days_at: int | None
) -> list[Criterion]:
    def at_least(value: float | None, floor: float) -> bool:
        return value is not None and value >= floor

    def below(value: float | None, ceiling: float) -> bool:
        return value is not None and value < ceiling

    pass_rate, timeouts = settings.HUD_READY_PASS_RATE, settings.HUD_READY_MAX_TIMEOUT_RATE
    end_to_end, queue = settings.HUD_READY_MAX_P50_END_TO_END, settings.HUD_READY_MAX_AVG_QUEUE
    table = [
        ("Pass rate", f"≥ {pass_rate:.0%}", "pass_rate", "rate", lambda v: at_least(v, pass_rate)),
        ("Timeout rate", f"< {timeouts:.0%}", "timeout_rate", "rate", lambda v: below(v, timeouts)),
        (
            "p50 end to end",
            f"< {end_to_end / 3600:g} h",
            "p50_end_to_end",
            "seconds",
            lambda v: below(v, end_to_end),
        ),
        (
            "Average queue",
            f"< {queue / 60:g} min",
            "avg_queue",
            "seconds",
            lambda v: below(v, queue),
        ),
    ]
    criteria = [
        Criterion(
            name,
            threshold,
            getattr(promote, attr),
            getattr(demote, attr),
            check(getattr(promote, attr)),
            check(getattr(demote, attr)),
            unit,
        )
        for name, threshold, attr, unit, check in table
    ]
    if level.step(+1) is not None:
        # A promotion waits this long at the level it leaves; it never demotes.
        minimum = settings.HUD_READY_MIN_DAYS_AT_L2
        days = float(days_at) if days_at is not None else None
        enough = at_least(days, minimum)
        name = f"Days at {level.value}"
        criteria.append(Criterion(name, f"≥ {minimum}", days, None, enough, True, "days", False))
    return criteria


# -- /crcr/metrics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    repo: str
    key: str
    points: tuple[DailyPoint, ...]
    times: tuple[DailyTimes, ...] = ()


@dataclass(frozen=True)
class MetricsPage:
    query: Query
    window: Window
    series: tuple[Series, ...]
    as_of: datetime | None
    tabs: tuple[TabCount, ...] = ()  # each tab's repos reporting (the probe left out)

    # Cached: the template asks once a chart (a frozen dataclass keeps no other state).
    @functools.cached_property
    def excluded(self) -> int:
        """The failures triaged upstream the charts leave out (the triage toggle)."""
        return sum(p.counts.excluded for s in self.series for p in s.points)

    @functools.cached_property
    def peak(self) -> int:
        """The busiest day of any repo: the volume charts' shared scale."""
        return max((p.counts.total for s in self.series for p in s.points), default=0)


def metrics_page(query: Query, store: RecordStore | None = None) -> MetricsPage:
    """Per repo, day by day: pass rate, failures, volume and times (the probe left out)."""
    store = store or get_store()
    window = query.window()
    exclude = [probe_key()]
    figures = store.window_figures(
        window,
        query.kind,
        exclude=exclude,
        measured=False,
        times=True,
        without_upstream=query.without_upstream,
    )
    times = figures.times
    listed = _listed()
    series = sorted(
        (
            Series(allowlisted(s.key, s.repo, listed), s.key, s.daily, times.get(s.key, ()))
            for s in figures.summaries
        ),
        key=lambda s: s.repo.casefold(),
    )
    return MetricsPage(query, window, tuple(series), store.newest(), figures.tabs)


# -- /crcr/pr/{number} -------------------------------------------------------------------------


@dataclass(frozen=True)
class PrPage:
    view: PrView
    title: str
    author: str
    upstream_repo: str
    red: int = field(default=0)
    # repo key → its failing jobs that are red on main too → since which main SHA
    on_main: dict[str, dict[str, str]] = field(default_factory=dict)
    unanswered: tuple[Unanswered, ...] = ()
    # repo key → head SHA → every job's latest attempt there (store.pr_jobs), on the heads
    # `jobs_on` names (reports.EVERY_HEAD, LATEST_HEAD or a head SHA)
    jobs: dict[str, dict[str, tuple[PrJob, ...]]] = field(default_factory=dict)
    jobs_on: str = EVERY_HEAD

    @property
    def head(self) -> str:
        """The head SHA whose jobs are listed, when one was asked for."""
        return "" if self.jobs_on in (EVERY_HEAD, LATEST_HEAD) else self.jobs_on

    @functools.cached_property
    def shown_on(self) -> frozenset[str]:
        """The repos whose jobs on the head asked for are listed (open on the page)."""
        return frozenset(key for key, heads in self.jobs.items() if self.head in heads)


CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
# The longest head a record stores (a callback's or an envelope's, not always a Git SHA).
HEAD_MAX: int = JobRecord._meta.get_field("head_sha").max_length or 100


def jobs_on(params: Mapping[str, str]) -> str:
    """The PR page's `head`: the head whose jobs it lists (absent: each repo's latest). Any
    head a record can hold, so that every head the page links lists."""
    head = params.get("head") or None
    if head is None:
        return LATEST_HEAD
    if len(head) > HEAD_MAX or CONTROL.search(head) or head in (EVERY_HEAD, LATEST_HEAD):
        raise BadQuery("head", f"must be a head of the PR (at most {HEAD_MAX} characters)")
    return head


def pr_page(number: int, store: RecordStore | None = None, *, jobs_on: str = EVERY_HEAD) -> PrPage:
    store = store or get_store()
    # One read: the PR's view and the jobs of the heads asked for (0 < number < 2**31, else
    # nothing: what a PR number can be and what every backend can bind). The HTML page lists
    # the latest head's (or one chosen head's) jobs and links each older head: a PR pushed
    # thrice to 30 repos has ~2,000 jobs, two thirds of them superseded.
    view, jobs = store.pr_with_jobs(number, exclude=[probe_key()], jobs_on=jobs_on)
    if view.repos:
        listed = _listed()
        named = [replace(r, repo=allowlisted(r.key, r.repo, listed)) for r in view.repos]
        named.sort(key=lambda r: (not r.latest.red, r.repo.casefold()))  # as PrView.of orders
        view = replace(view, repos=tuple(named))
    pull = (
        UpstreamPull.objects.filter(number=number)
        .values_list("title", "author", "upstream_repo")
        .first()
    )
    title, author, upstream = pull or ("", "", settings.CRCR_UPSTREAM_REPO)
    red = {r.key: [cell.job_name for cell in r.failing] for r in view.repos if r.latest.red}
    on_main: dict[str, dict[str, str]] = {}
    if any(red.values()):
        now = timezone.now()
        shas = baseline.main_shas(upstream, now=now)
        on_main = baseline.failing_on_main(store, red, shas, now=now)
    return PrPage(
        view,
        title,
        author,
        upstream,
        sum(r.latest.red for r in view.repos),
        on_main,
        of_pr(number, store, timezone.now()),
        jobs,
        jobs_on,
    )
