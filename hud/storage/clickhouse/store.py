"""The HUD's ClickHouse backend: the storage contract on a ReplacingMergeTree.

Reads are here, every statement in hud/storage/clickhouse/queries.py; writes (the outbox and its
drain) are in hud/storage/clickhouse/writes.py.
"""

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields as dataclass_fields
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings

from crcr_site import sql
from hud.models import JobRecord
from hud.reports import (
    CELL_SOURCE,
    EVERY_HEAD,
    PR_LATEST_SOURCE,
    RED,
    Cell,
    Counts,
    DailyPoint,
    DailyTimes,
    HeadRun,
    JobStats,
    Kind,
    MainResult,
    MatrixPage,
    MatrixRow,
    PrActivity,
    PrHead,
    PrJobs,
    PrView,
    ReadinessMetrics,
    RecentRuns,
    RepoSummary,
    StaleJob,
    TabCount,
    Window,
    WindowFigures,
    head_runs,
    latest_attempts,
    overview_measured,
    pr_heads_of,
    pr_of_latest,
    tab_counts_of,
    worst_first,
)
from hud.storage.base import (
    STORED_JOB_FIELDS,
    HudRecord,
    RecordExists,
    RecordKey,
    RecordStore,
    StoredJob,
    StoreUnavailable,
    may_change,
)
from hud.storage.clickhouse import queries as q
from hud.storage.clickhouse import writes
from hud.storage.clickhouse.drivers import ChdbDriver, Driver, driver_for

# What a matrix cell needs (hud/reports.py Cell.of), and where it belongs.
CELL_COLUMNS = ["downstream_repo", "repo_display", "pr_number", "head_sha", *CELL_SOURCE]
_drivers: dict[str, Driver] = {}
# The events of every tab (hud/reports.py Kind), in order.
TAB_EVENTS = [event for kind in Kind for event in kind.events]


def _driver(url: str) -> Driver:
    # One driver per URL and process: chdb must not be opened twice.
    if url not in _drivers:
        _drivers[url] = driver_for(url)
    return _drivers[url]


# What ClickHouse answers for the max of no DateTime64 values.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ClickHouseRecordStore(RecordStore):
    def __init__(self, url: str | None = None, *, driver: Driver | None = None) -> None:
        self.driver = driver or _driver(url or settings.HUD_CLICKHOUSE_URL or "")
        # chdb: this process owns ClickHouse, so it drains the outbox itself before a store's
        # first read (get_store() makes one per request) and after the store's own writes.
        self.owns_engine = isinstance(self.driver, ChdbDriver)
        self._names: dict[str, str] = {}  # repo key → display name, as cells are read
        self.drains_on_read = self.owns_engine

    # -- schema, rows and writes (writes.py) -----------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply the schema versions not applied yet; the ones applied now."""
        return writes.migrate(self.driver)

    def put_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        return writes.put_rows(self.driver, rows)

    def rows(self) -> Iterator[dict[str, Any]]:
        self._drain_before_read()
        return writes.stored_rows(self.driver)

    def upsert(self, record: HudRecord, *, now: datetime) -> bool:
        # The drain merges by hud.storage.merged, whatever is stored by then; a record from
        # elsewhere is refused here too when a verified one is stored, so its sender hears so.
        # (ClickHouse down: written to the outbox all the same, and the drain decides.)
        if record.source != JobRecord.Source.RELAY:
            try:
                self.drain()
                current = writes.stored_row(self.driver, record.key)
            except StoreUnavailable:
                current = None
            if current is not None and not may_change(current.get("source"), record.source):
                return False
        sql.insert_row(writes.outbox_row(record, now))
        self.drains_on_read = self.owns_engine
        return True

    def upsert_guarded(
        self,
        record: HudRecord,
        *,
        now: datetime,
        guard: sql.Row,
        alongside: Sequence[sql.Row] = (),
        only_if: sql.Condition | None = None,
    ) -> bool:
        # The record's outbox row joins the caller's statement; the drain merges it later.
        fresh = sql.insert_if_new(guard, [writes.outbox_row(record, now), *alongside], only_if)
        self.drains_on_read = self.owns_engine
        return fresh

    def stored_job(self, key: RecordKey) -> StoredJob | None:
        # What the outbox holds is committed too: drained first (rows a worker is draining
        # at this moment are skipped, and so not seen: the caller refuses rather than guess).
        self.drain()
        row = writes.stored_row(self.driver, key)
        if row is None:
            return None
        return StoredJob(*(row[name] for name in STORED_JOB_FIELDS))

    def insert_new(self, record: HudRecord, *, now: datetime) -> None:
        # Written once per key: refused when ClickHouse or the outbox already has the key.
        if writes.stored(self.driver, record.key):
            raise RecordExists(str(record.key))
        sql.insert_row(writes.outbox_row(record, now))
        self.drains_on_read = self.owns_engine

    def drain(self, batch: int = writes.DRAIN_BATCH) -> int:
        """Move outbox rows into ClickHouse, oldest first; how many."""
        return writes.drain(self.driver, batch)

    # -- reads -----------------------------------------------------------------------------------

    def _drain_before_read(self) -> None:
        if self.drains_on_read:
            self.drains_on_read = False
            self.drain()

    def _select(self, statement: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        self._drain_before_read()
        return self.driver.select(statement, params)

    def _where(
        self,
        window: Window | None,
        kind: Kind | None,
        params: dict[str, Any],
        *,
        exclude: Sequence[str] = (),
        only: str | None = None,
    ) -> str:
        parts = ["1"]
        if window is not None:
            params |= {"start": window.start, "end": window.end}
            parts.append(q.WINDOW)
        if kind is not None:
            parts.append(f"event_type IN {q.in_list('ev', kind.events, params)}")
        if exclude:
            parts.append(f"downstream_repo NOT IN {q.in_list('ex', exclude, params)}")
        if only is not None:
            parts.append("downstream_repo = {only:String}")
            params["only"] = only
        return " AND ".join(parts)

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
        params: dict[str, Any] = {}
        where = self._where(window, kind, params, exclude=exclude, only=only)
        upstream = q.UPSTREAM if without_upstream else ""
        columns = _summary_columns("1", measured=measured, upstream=upstream, overview=overview)
        statement = (
            f"SELECT downstream_repo, {', '.join(columns)} "
            f"FROM {q.TABLE} FINAL WHERE {where} GROUP BY downstream_repo"
        )
        rows = self._select(statement, params)
        summaries = [_summary(row[0], row[1:], upstream=bool(upstream)) for row in rows]
        return sorted(summaries, key=worst_first)

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
        # One statement over every record of the window, per repo: the summary (its counts and
        # days one tally), the tabs' counts, the newest record and, if asked, each day's times.
        # Each statement apart cost 7-11 ms here, most of it before a row is read; the repos
        # left out are left out by the flag, so that they are heard.
        params: dict[str, Any] = {}
        where = self._where(window, None, params)
        where += f" AND event_type IN {q.in_list('tev', TAB_EVENTS, params)}"
        in_kind = f"event_type IN {q.in_list('ev', kind.events, params)}"
        if exclude:
            in_kind += f" AND downstream_repo NOT IN {q.in_list('ex', exclude, params)}"
        flags = {"in_kind": in_kind}
        if without_upstream:
            flags["up"] = q.UPSTREAM
        columns = [f"countIf(event_type = '{event}')" for event in TAB_EVENTS]
        columns += _summary_columns(
            "in_kind",
            measured=measured,
            timed=times,
            upstream="up" if without_upstream else "",
            overview=overview and not times,  # the days' times are the queue's too
        )
        if times:
            first_day = _day_number(window.start.astimezone(UTC).date())
            columns += q.daily_percentiles(
                ("queue_time", "in_kind AND run_attempt = 1"),
                ("execution_time", "in_kind AND status = 'completed'"),
                days=range(first_day, _day_number(window.end.astimezone(UTC).date()) + 1),
            )
        statement = (
            f"SELECT downstream_repo, max(received_at), {', '.join(columns)} "
            f"FROM {_flagged(flags, where)} GROUP BY downstream_repo"
        )
        left_out, asked = set(exclude), set(heard_from)
        summaries: list[RepoSummary] = []
        daily_times: dict[str, tuple[DailyTimes, ...]] = {}
        tabs: list[tuple[str, str, int]] = []
        heard: dict[str, datetime] = {}
        width = len(TAB_EVENTS)
        for repo, newest, *figures in self._select(statement, params):
            if repo in asked:
                heard[repo] = newest
            if repo not in left_out:
                tabs += [(e, repo, n) for e, n in zip(TAB_EVENTS, figures[:width], strict=True)]
            summary = _summary(repo, figures[width:], upstream=without_upstream)
            if not summary.counts.records:
                continue  # no record of the kind: not one of its repos
            if times:  # each day with records of the kind (a day of the window: in the range)
                queue, execution = q.daily_percentiles_of(figures[-4:])
                offsets = (_day_number(point.day) - first_day for point in summary.daily)
                daily_times[repo] = tuple(
                    DailyTimes(point.day, *queue[n], *execution[n])
                    for point, n in zip(summary.daily, offsets, strict=True)
                )
            if not measured:  # read for the days' times: not the summary's figures
                summary = _unmeasured(summary)
            elif overview:
                summary = overview_measured(summary)
            summaries.append(summary)
        return WindowFigures(
            sorted(summaries, key=worst_first), tab_counts_of(tabs), daily_times, heard
        )

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
        # One read: the summary's, every readiness window's and the tabs' figures are -If
        # aggregates, their counts one tally flagged per window, and the deliveries heard from
        # one more.
        every = [window, *readiness_windows]
        params: dict[str, Any] = {
            "repo": repo_key,
            "lo": min(w.start for w in every),
            "hi": max(w.end for w in every),
            "ps": window.start,
            "pe": window.end,
        }
        page = (
            "received_at >= {ps:DateTime64(6, 'UTC')} AND received_at < {pe:DateTime64(6, 'UTC')}"
            f" AND event_type IN {q.in_list('ev', kind.events, params)}"
        )
        flags = {
            "in_page": page,
            "in_window": "received_at >= {ps:DateTime64(6, 'UTC')} "
            "AND received_at < {pe:DateTime64(6, 'UTC')}",
            **_readiness_flags(readiness_windows, params),
        }
        upstream = ""
        if without_upstream:  # a flag too: the tally flags it, the subquery reads it
            flags[upstream := "up"] = q.UPSTREAM
        summary_columns = _summary_columns("in_page", upstream=upstream)
        # The readiness windows' counts: a tally of the rows in any, flagged per window.
        windows = [f"w{n}" for n in range(len(readiness_windows))]
        columns = [
            *summary_columns,
            q.tally(" OR ".join(windows) or "0", [*windows, *([upstream] if upstream else [])]),
            *_readiness_columns(len(readiness_windows)),
            *(f"countIf(in_window AND event_type = '{event}')" for event in TAB_EVENTS),
        ]
        params["asked"] = list(heard_from)
        columns.append(
            "groupUniqArrayIf(delivery_id, in_window AND has({asked:Array(String)}, delivery_id))"
        )
        rows = _flagged(
            flags,
            "downstream_repo = {repo:String} AND received_at >= {lo:DateTime64(6, 'UTC')}"
            " AND received_at < {hi:DateTime64(6, 'UTC')}",
        )
        row = self._select(f"SELECT {', '.join(columns)} FROM {rows}", params)[0]
        width = len(summary_columns)
        read = _summary(repo_key, row[:width], upstream=bool(upstream))
        summary = read if read.counts.records else None
        *figures, heard = row[width:]
        tally = _Tally(figures[0], flags=len(windows) + bool(upstream))
        times = figures[1 : 1 + 2 * len(windows)]
        tabs = figures[-len(TAB_EVENTS) :]
        up = len(windows) if upstream else None
        return (
            summary,
            _readiness(readiness_windows, times, tally, upstream=up),
            tab_counts_of((event, repo_key, n) for event, n in zip(TAB_EVENTS, tabs, strict=True)),
            set(heard),
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
        params: dict[str, Any] = {}
        where = self._where(window, kind, params, exclude=exclude, only=only)
        counts = q.COUNTS + (f", countIf({q.UPSTREAM})" if without_upstream else "")
        statement = (
            f"SELECT downstream_repo, toDate(received_at) AS day, {counts} "
            f"FROM {q.TABLE} FINAL WHERE {where} GROUP BY downstream_repo, day "
            "ORDER BY downstream_repo, day"
        )
        series: dict[str, list[DailyPoint]] = {}
        for row in self._select(statement, params):
            tally = Counts(*row[2:8]).excluding(row[8] if without_upstream else 0)
            series.setdefault(row[0], []).append(DailyPoint(row[1], tally))
        return {repo: tuple(points) for repo, points in series.items()}

    def tab_counts(
        self, window: Window, *, exclude: Sequence[str] = (), only: str | None = None
    ) -> tuple[TabCount, ...]:
        params: dict[str, Any] = {}
        where = self._where(window, None, params, exclude=exclude, only=only)
        where += f" AND event_type IN {q.in_list('ev', TAB_EVENTS, params)}"
        # FINAL: a record is counted once, whatever versions of it are stored.
        statement = (
            f"SELECT event_type, downstream_repo, count() FROM {q.TABLE} FINAL WHERE {where} "
            "GROUP BY event_type, downstream_repo"
        )
        return tab_counts_of(self._select(statement, params))

    def daily_times(
        self, window: Window, kind: Kind, *, exclude: Sequence[str] = ()
    ) -> dict[str, tuple[DailyTimes, ...]]:
        params: dict[str, Any] = {}
        where = self._where(window, kind, params, exclude=exclude)
        queue = q.percentiles("queue_time", "run_attempt = 1", 0.5, 0.9)
        execution = q.percentiles("execution_time", "status = 'completed'", 0.5, 0.9)
        statement = (
            f"SELECT downstream_repo, toDate(received_at) AS day, {', '.join(queue + execution)} "
            f"FROM {q.TABLE} FINAL WHERE {where} GROUP BY downstream_repo, day "
            "ORDER BY downstream_repo, day"
        )
        series: dict[str, list[DailyTimes]] = {}
        for row in self._select(statement, params):
            series.setdefault(row[0], []).append(DailyTimes(row[1], *row[2:6]))
        return {repo: tuple(days) for repo, days in series.items()}

    def main_results(
        self, repo_keys: Sequence[str], jobs: Sequence[str], shas: Sequence[str], window: Window
    ) -> list[MainResult]:
        if not repo_keys or not jobs:
            return []
        params: dict[str, Any] = {}
        where = self._where(window, None, params)
        on_main = f"event_type IN {q.in_list('ev', Kind.NIGHTLY.events, params)}"
        if shas:
            on_main += f" OR (event_type = 'push' AND head_sha IN {q.in_list('sha', shas, params)})"
        matching = (
            f"{where} AND downstream_repo IN {q.in_list('repo', repo_keys, params)} "
            f"AND job_name IN {q.in_list('job', jobs, params)} AND ({on_main})"
        )
        # Main's records are a few in a hundred, and FINAL collapses every record of the
        # window's granules before WHERE drops the PRs'. A record's delivery is the same in all
        # its versions, so PREWHERE on the deliveries with any version on main keeps each such
        # record whole (FINAL stays exact) and the rest unread; WHERE then judges the latest
        # versions (27 -> 13 ms at 1M records).
        statement = (
            "SELECT downstream_repo, head_sha, job_name, status, conclusion, run_attempt, "
            f"received_at FROM {q.TABLE} FINAL PREWHERE delivery_id IN (SELECT delivery_id "
            f"FROM {q.TABLE} WHERE {matching}) WHERE {matching}"
        )
        return latest_attempts(
            MainResult(repo, sha, job, status, conclusion, run_attempt=attempt, at=at)
            for repo, sha, job, status, conclusion, attempt, at in self._select(statement, params)
        )

    def job_stats(self, repo_key: str, window: Window, kind: Kind) -> list[JobStats]:
        params: dict[str, Any] = {}
        where = self._where(window, kind, params, only=repo_key)
        red = ", ".join(repr(c) for c in RED)
        # Per head, then per job, in the statement: a busy repo has thousands of (job, head)
        # pairs, and a few dozen jobs.
        heads = (
            f"SELECT job_name, head_sha, max(conclusion IN ({red})) AS red, "
            f"max(conclusion = 'success') AS green FROM {q.TABLE} FINAL "
            f"WHERE {where} AND status = 'completed' GROUP BY job_name, pr_number, head_sha"
        )
        statement = (
            "SELECT job_name, count(), countIf(red), countIf(red AND green), "
            f"arraySort(groupArrayIf(head_sha, red AND green)) FROM ({heads}) "
            "GROUP BY job_name ORDER BY job_name"
        )
        return [
            JobStats(job, heads, failed, flaky, tuple(shas))
            for job, heads, failed, flaky, shas in self._select(statement, params)
        ]

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
        params: dict[str, Any] = {"repo": repo_key}
        where = self._where(window, kind, params) + " AND downstream_repo = {repo:String}"
        if pr is not None:
            where += " AND pr_number = {pr:UInt32}"
            params["pr"] = pr
        hits = "1"
        if outcome is not None:
            hits = f"if({q.OUTCOME} = {{outcome:String}}, 1, 0)"
            params["outcome"] = outcome
        # Without an outcome filter every row group is kept, so the job names of all of them
        # (a window over the groups, before the LIMIT) are the matrix's columns: no second read.
        names = "groupUniqArrayArray(groupUniqArray(job_name)) OVER ()" if outcome is None else "[]"
        statement = (
            "SELECT pr_number, head_sha, min(received_at) AS first_at, "
            f"max(received_at) AS last_at, sum({hits}) AS hits, count() OVER (), {names} "
            f"FROM (SELECT pr_number, head_sha, job_name, status, conclusion, received_at "
            f"FROM {q.TABLE} FINAL WHERE {where} {q.LATEST} "
            "LIMIT 1 BY pr_number, head_sha, job_name) "
            "GROUP BY pr_number, head_sha HAVING hits > 0 "
            "ORDER BY last_at DESC, pr_number DESC, head_sha ASC "
            "LIMIT {limit:UInt32} OFFSET {offset:UInt32}"
        )
        found = self._select(
            statement, params | {"limit": per_page, "offset": (page - 1) * per_page}
        )
        rows = [MatrixRow(r[0], r[1], r[2], r[3]) for r in found]
        total = found[0][5] if found else 0
        if not found and page > 1:
            total = self.matrix(
                repo_key, window, kind, outcome=outcome, pr=pr, page=1, per_page=1
            ).total_rows
        if found and outcome is None:
            columns = tuple(sorted(found[0][6]))
        elif outcome is None and page == 1:
            columns = ()  # no row group at all: the window holds none of its jobs
        else:
            columns = tuple(
                r[0]
                for r in self._select(
                    # A job's name is the same in every version of a record: no FINAL needed.
                    f"SELECT DISTINCT job_name FROM {q.TABLE} WHERE {where} ORDER BY job_name",
                    params,
                )
            )
        # The page's rows are its newest: their receive times bound what FINAL has to read.
        bounded = where
        if rows:
            bounded += (
                " AND received_at >= {rows_from:DateTime64(6, 'UTC')}"
                " AND received_at <= {rows_to:DateTime64(6, 'UTC')}"
            )
            params |= {
                "rows_from": min(r.first_at for r in rows),
                "rows_to": max(r.last_at for r in rows),
            }
        cells = self._cells(bounded, params, [(r.pr_number, r.head_sha) for r in rows])
        for row in rows:
            row.cells.update(cells.get((repo_key, row.pr_number, row.head_sha), {}))
        return MatrixPage(
            repo=self._names.get(repo_key, repo_key),
            columns=columns,
            rows=tuple(rows),
            page=page,
            pages=max(1, -(-total // per_page)),
            total_rows=total,
        )

    def recent_runs(self, repo_key: str, window: Window, *, per_kind: int) -> RecentRuns:
        # One statement for both tabs: each job's latest attempt, its row's first and last
        # receive times over the row (a window), the rows ranked newest first in each tab.
        params: dict[str, Any] = {"repo": repo_key, "per_kind": per_kind}
        where = self._where(window, None, params) + " AND downstream_repo = {repo:String}"
        where += f" AND event_type IN {q.in_list('tev', TAB_EVENTS, params)}"
        nightly = q.in_list("nev", Kind.NIGHTLY.events, params)
        tab = f"if(event_type IN {nightly}, '{Kind.NIGHTLY.value}', '{Kind.PR.value}')"
        latest = (
            f"SELECT {tab} AS tab, {', '.join(CELL_COLUMNS)} FROM {q.TABLE} FINAL "
            f"WHERE {where} {q.LATEST} LIMIT 1 BY tab, pr_number, head_sha, job_name"
        )
        spans = (
            "SELECT *, min(received_at) OVER head AS first_at, max(received_at) OVER head "
            f"AS last_at FROM ({latest}) WINDOW head AS (PARTITION BY tab, pr_number, head_sha)"
        )
        ranked = (
            "SELECT *, dense_rank() OVER (PARTITION BY tab ORDER BY last_at DESC, "
            f"pr_number DESC, head_sha ASC) AS newest FROM ({spans})"
        )
        statement = (
            f"SELECT tab, newest, first_at, last_at, {', '.join(CELL_COLUMNS)} "
            f"FROM ({ranked}) WHERE newest <= {{per_kind:UInt32}}"
        )
        found: dict[tuple[str, int], MatrixRow] = {}
        name = ""
        for tab, newest, first_at, last_at, *values in self._select(statement, params):
            row = writes.decoded(dict(zip(CELL_COLUMNS, values, strict=True)))
            if (tab, newest) not in found:
                found[tab, newest] = MatrixRow(row["pr_number"], row["head_sha"], first_at, last_at)
            found[tab, newest].cells[row["job_name"]] = Cell.of(row)
            name = row["repo_display"]
        rows = {
            kind: tuple(found[key] for key in sorted(k for k in found if k[0] == kind.value))
            for kind in Kind
        }
        return RecentRuns(name, rows)

    def _cells(
        self, where: str, params: dict[str, Any], rows: Sequence[tuple[int, str]]
    ) -> dict[tuple[str, int, str], dict[str, Cell]]:
        """The latest attempt of each job in the given (PR, SHA) rows, by (repo, PR, SHA)."""
        if not rows:
            return {}
        params = dict(params) | {"rows": [(int(number), sha) for number, sha in rows]}
        names = CELL_COLUMNS
        # A tuple IN, not an OR of pairs (a third less of ClickHouse's time, most of it was
        # analysing the ORs), the pairs one array parameter (queries.in_list).
        statement = (
            f"SELECT {', '.join(names)} FROM {q.TABLE} FINAL WHERE {where} "
            "AND (pr_number, head_sha) IN {rows:Array(Tuple(UInt32, String))} "
            f"{q.LATEST} "
            "LIMIT 1 BY downstream_repo, pr_number, head_sha, job_name"
        )
        cells: dict[tuple[str, int, str], dict[str, Cell]] = {}
        for values in self._select(statement, params):
            row = writes.decoded(dict(zip(names, values, strict=True)))
            key = (row["downstream_repo"], row["pr_number"], row["head_sha"])
            cells.setdefault(key, {})[row["job_name"]] = Cell.of(row)
            self._names[row["downstream_repo"]] = row["repo_display"]
        return cells

    def pr_with_jobs(
        self, number: int, *, exclude: Sequence[str] = (), jobs_on: str = EVERY_HEAD
    ) -> tuple[PrView, PrJobs]:
        if not 0 < number < 2**31:
            return PrView(number=number, repos=()), {}
        params: dict[str, Any] = {"number": number}
        where = self._where(None, Kind.PR, params, exclude=exclude)
        # FINAL reads every granule it cannot rule out by the sorting key, and a PR number is
        # not in it. A record's PR number is the same in every one of its versions (as its
        # repo and receive time are), so PREWHERE may narrow the read to the PR's rows before
        # the versions collapse: each of its records keeps all its versions, and FINAL stays
        # exact. One read for the whole page (a third of the time of reading without it).
        statement = (
            f"SELECT {', '.join(PR_LATEST_SOURCE)} FROM {q.TABLE} FINAL "
            f"PREWHERE pr_number = {{number:UInt32}} WHERE {where} {q.LATEST} "
            "LIMIT 1 BY downstream_repo, head_sha, job_name"
        )
        found = self._select(statement, params)
        rows = (dict(zip(PR_LATEST_SOURCE, values, strict=True)) for values in found)
        return pr_of_latest(number, rows, jobs_on=jobs_on, decoded=writes.decoded)

    def readiness(
        self, repo_key: str, window: Window, *, without_upstream: bool = False
    ) -> ReadinessMetrics:
        return self.readiness_over(repo_key, [window], without_upstream=without_upstream)[0]

    def readiness_over(
        self, repo_key: str, windows: Sequence[Window], *, without_upstream: bool = False
    ) -> list[ReadinessMetrics]:
        # One read of the widest window; each window's figures are -If aggregates over it,
        # its counts those of its flag in one tally.
        params: dict[str, Any] = {"repo": repo_key}
        widest = max(windows, key=lambda w: w.days)
        where = self._where(widest, Kind.PR, params, only=repo_key)
        flags = _readiness_flags(windows, params)
        upstream = ""
        if without_upstream:
            flags[upstream := "up"] = q.UPSTREAM
        rows = _flagged(flags, where)
        columns = [
            q.tally("1", list(flags)),
            *_readiness_columns(len(windows)),
        ]
        tally, *times = self._select(f"SELECT {', '.join(columns)} FROM {rows}", params)[0]
        return _readiness(
            windows,
            times,
            _Tally(tally, flags=len(flags)),
            upstream=len(windows) if upstream else None,
        )

    def in_progress_since(self, cutoff: datetime, limit: int) -> list[StaleJob]:
        names = [f.name for f in dataclass_fields(StaleJob)]
        rows = self._select(
            f"SELECT {', '.join(names)} FROM {q.TABLE} FINAL WHERE status = 'in_progress' "
            "AND source = 'relay' AND updated_at < {cutoff:DateTime64(6, 'UTC')} "
            "ORDER BY updated_at LIMIT {limit:UInt32}",
            {"cutoff": cutoff, "limit": limit},
        )
        return [StaleJob(*row) for row in rows]

    def outcomes(
        self, repo_key: str, window: Window, kind: Kind
    ) -> dict[tuple[date, str, str, str], int]:
        params: dict[str, Any] = {}
        where = self._where(window, kind, params, only=repo_key)
        statement = (
            "SELECT toDate(received_at) AS day, job_name, status, conclusion, count() "
            f"FROM {q.TABLE} FINAL WHERE {where} GROUP BY day, job_name, status, conclusion"
        )
        found = self._select(statement, params)
        return {(day, job, status, end): n for day, job, status, end, n in found}

    # received_at is the same in every version of a record: no FINAL needed for these two.

    def newest(self) -> datetime | None:
        # A bare max() is answered from each part's minmax index of the partition key, without
        # reading the column (4-8 ms less on every page here); over no rows it is the epoch,
        # which no record is received at (the relay stamps it).
        newest = self._select(f"SELECT max(received_at) FROM {q.TABLE}", {})[0][0]
        return newest if newest > EPOCH else None

    def first_seen(self, repo_key: str) -> datetime | None:
        row = self._select(
            f"SELECT if(count() = 0, NULL, min(received_at)) FROM {q.TABLE} "
            "WHERE downstream_repo = {repo:String}",
            {"repo": repo_key},
        )
        return row[0][0]

    def runs_on_head(self, repo_key: str, head_sha: str, *, since: datetime) -> list[HeadRun]:
        rows = self._select(
            f"SELECT run_id, run_attempt, status, conclusion FROM {q.TABLE} FINAL "
            "WHERE downstream_repo = {repo:String} AND head_sha = {sha:String} "
            "AND received_at >= {since:DateTime64(6, 'UTC')} AND run_id != ''",
            {"repo": repo_key, "sha": head_sha, "since": since},
        )
        return head_runs(rows)

    # The PR list's reads need no FINAL for what they select by: a record's repo, delivery,
    # PR number, head SHA, event and receive time are the same in every version of it.

    def recent_prs(
        self,
        window: Window,
        *,
        limit: int,
        numbers: Sequence[int] | None = None,
        sha: str | None = None,
        exclude: Sequence[str] = (),
    ) -> list[PrActivity]:
        params: dict[str, Any] = {"limit": limit}
        where = self._where(window, Kind.PR, params, exclude=exclude) + " AND pr_number > 0"
        if numbers is not None or sha is not None:
            matching = [f"pr_number IN {_numbers(numbers or (), params)}"]
            if sha:  # the PR's newest record need not be on that head: a subquery
                matching.append(
                    f"pr_number IN (SELECT pr_number FROM {q.TABLE} WHERE {where} "
                    "AND startsWith(head_sha, {sha:String}))"
                )
                params["sha"] = sha
            where += f" AND ({' OR '.join(matching)})"
        rows = self._select(
            f"SELECT pr_number, max(received_at) AS last FROM {q.TABLE} WHERE {where} "
            "GROUP BY pr_number ORDER BY last DESC, pr_number DESC LIMIT {limit:UInt32}",
            params,
        )
        return [PrActivity(number, last) for number, last in rows]

    def pr_heads(self, numbers: Sequence[int], *, exclude: Sequence[str] = ()) -> dict[int, PrHead]:
        if not numbers:
            return {}
        params: dict[str, Any] = {}
        where = self._where(None, Kind.PR, params, exclude=exclude)
        numbered = f"pr_number IN {_numbers(numbers, params)}"
        # PREWHERE under FINAL, as pr_with_jobs does (a record's PR number is the same in all
        # its versions): the PRs' rows are found before the versions collapse, half the time.
        statement = (
            f"SELECT pr_number, head_sha, downstream_repo, argMax(repo_display, received_at), "
            f"{q.COUNTS} FROM (SELECT pr_number, head_sha, downstream_repo, repo_display, "
            f"job_name, status, conclusion, received_at FROM {q.TABLE} FINAL "
            f"PREWHERE {numbered} WHERE {where} "
            f"AND (pr_number, head_sha) IN (SELECT pr_number, argMax(head_sha, received_at) "
            f"FROM {q.TABLE} WHERE {where} AND {numbered} GROUP BY pr_number) {q.LATEST} "
            "LIMIT 1 BY pr_number, downstream_repo, job_name) "
            "GROUP BY pr_number, head_sha, downstream_repo"
        )
        return pr_heads_of(self._select(statement, params))

    def heard_from(
        self,
        pairs: Iterable[tuple[str, str]],
        *,
        since: datetime | None = None,
        pr_number: int | None = None,
    ) -> set[tuple[str, str]]:
        heard: set[tuple[str, str]] = set()
        bound = ""
        if since is not None:  # the weeks before it are not read (the table's partitions)
            bound = " AND received_at >= {since:DateTime64(6, 'UTC')}"
        if pr_number is not None:  # the granules of other PRs are not (its minmax index)
            bound += " AND pr_number = {pr:UInt32}"
        for batch in itertools.batched(sorted(set(pairs)), 500):
            params: dict[str, Any] = {"pairs": list(batch)}
            params |= {"since": since} if since is not None else {}
            params |= {"pr": pr_number} if pr_number is not None else {}
            rows = self._select(
                f"SELECT DISTINCT downstream_repo, delivery_id FROM {q.TABLE} WHERE "
                "(downstream_repo, delivery_id) IN {pairs:Array(Tuple(String, String))}"
                f"{bound}",
                params,
            )
            heard |= {(repo, delivery) for repo, delivery in rows}
        return heard

    def last_heard(self, repo_keys: Sequence[str], *, since: datetime) -> dict[str, datetime]:
        if not repo_keys:
            return {}
        params: dict[str, Any] = {"since": since}
        rows = self._select(
            f"SELECT downstream_repo, max(received_at) FROM {q.TABLE} "
            f"WHERE downstream_repo IN {q.in_list('lh', repo_keys, params)} "
            "AND received_at >= {since:DateTime64(6, 'UTC')} GROUP BY downstream_repo",
            params,
        )
        return {repo: at for repo, at in rows}


def _numbers(numbers: Sequence[int], params: dict[str, Any]) -> str:
    """`{pn:Array(UInt32)}` for PR numbers, one array parameter (queries.in_list)."""
    params["pn"] = [int(number) for number in numbers]
    return "{pn:Array(UInt32)}"


def _summary_columns(
    where: str,
    *,
    measured: bool = True,
    upstream: str = "",
    timed: bool = False,
    overview: bool = False,
) -> list[str]:
    """A RepoSummary's figures over the rows matching `where`, in _summary's order: its counts
    and days one tally (with `upstream`, the condition of a failure triaged upstream, its
    flag: those failures are left out); without the times and the PR count (0 and NULLs)
    unless `measured` (`timed`: the times, not the PR count); with `overview`, only the
    measures /crcr shows (reports.overview_measured)."""
    completed = f"{where} AND status = 'completed'"
    timed_run = f"{completed} AND execution_time IS NOT NULL"
    first = f"{where} AND run_attempt = 1 AND queue_time IS NOT NULL"
    measures = [
        f"uniqExactIf(pr_number, {where} AND pr_number > 0)" if measured else "0",
        q.average("execution_time", timed_run),
        *q.percentiles("execution_time", completed, 0.5, 0.9),
        q.average("queue_time", first),
        *q.percentiles("queue_time", f"{where} AND run_attempt = 1", 0.5, 0.9),
    ]
    if overview:  # what /crcr shows of them (reports.overview_measured): not the rest
        measures = ["0", "NULL", *measures[2:5], "NULL", "NULL"]
    return [
        f"argMaxIf(repo_display, received_at, {where})",
        f"argMaxIf(level, received_at, {where})",
        q.tally(where, [upstream] if upstream else []),
        *(measures if measured or timed else ["0", *["NULL"] * (len(measures) - 1)]),
        f"maxIf(received_at, {where})",
        f"argMaxIf(head_sha, received_at, {where})",
    ]


def _summary(key: str, row: Sequence[Any], *, upstream: bool = False) -> RepoSummary:
    """A _summary_columns row as the repo's summary (`upstream`: its tally flags those)."""
    tally = _Tally(row[2], flags=int(upstream))
    up = 0 if upstream else None
    return RepoSummary(
        repo=row[0],
        key=key,
        level=row[1],
        counts=tally.counts(upstream=up),
        prs=row[3],
        avg_execution=row[4],
        p50_execution=row[5],
        p90_execution=row[6],
        avg_queue=row[7],
        p90_queue=row[9],
        last_run=row[10],
        daily=tally.daily(upstream=up),
        last_sha=row[11] or "",
    )


def _unmeasured(summary: RepoSummary) -> RepoSummary:
    """The summary as one read with measured=False says it: no times."""
    return replace(
        summary,
        avg_execution=None,
        p50_execution=None,
        p90_execution=None,
        avg_queue=None,
        p90_queue=None,
    )


def _day_number(day: date) -> int:
    """A UTC day as ClickHouse numbers it (toUInt32(toDate(…))): days since 1970-01-01."""
    return (day - EPOCH.date()).days


class _Tally:
    """queries.tally's sums read back: how many rows of each day, flags and outcome."""

    def __init__(self, summed: Sequence[Sequence[Any]] | None, *, flags: int) -> None:
        keys, ones = summed or ((), ())
        shift, mask = 3 + flags, (1 << flags) - 1
        # (day, flag bits, outcome, rows) for each key the rows had
        self.entries = [
            (key >> shift, (key >> 3) & mask, key & 7, int(n))
            for key, n in zip(map(int, keys), ones, strict=True)
        ]
        self._summed: dict[tuple[int | None, int | None], dict[int | None, Counts]] = {}

    def counts(self, *, flag: int | None = None, upstream: int | None = None) -> Counts:
        """The counts of the rows with flag bit `flag` (None: all), less the failures with
        flag bit `upstream` (those triaged upstream; None: none left out)."""
        return self._by_day(flag, upstream).get(None) or Counts()

    def daily(
        self, *, flag: int | None = None, upstream: int | None = None
    ) -> tuple[DailyPoint, ...]:
        """The counts of each day with such rows, oldest first (as `counts`)."""
        by_day = self._by_day(flag, upstream)
        return tuple(
            DailyPoint(EPOCH.date() + timedelta(days=day), tally)
            for day, tally in sorted((d, c) for d, c in by_day.items() if d is not None)
        )

    def _by_day(self, flag: int | None, upstream: int | None) -> dict[int | None, Counts]:
        """Each day's counts and (None) the whole's, summed once for both `counts` and `daily`."""
        if (flag, upstream) not in self._summed:
            self._summed[flag, upstream] = self._sum(flag, upstream)
        return self._summed[flag, upstream]

    def _sum(self, flag: int | None, upstream: int | None) -> dict[int | None, Counts]:
        wanted = 0 if flag is None else 1 << flag
        left_out = 0 if upstream is None else 1 << upstream
        sums: dict[int | None, list[int]] = {}
        for day, bits, outcome, n in self.entries:
            if bits & wanted == wanted:
                tally = sums.get(day)
                if tally is None:
                    tally = sums[day] = [0] * 7  # by outcome code, and those left out
                tally[outcome] += n
                if bits & left_out:
                    tally[6] += n
        if sums:  # the whole's: its days' summed
            sums[None] = [sum(column) for column in zip(*sums.values(), strict=True)]
        return {
            day: Counts(n[1], n[2], n[3], n[4], n[0] + n[1] + n[2] + n[3] + n[4], n[5]).excluding(
                n[6]
            )
            for day, n in sums.items()
        }


def _readiness_flags(windows: Sequence[Window], params: dict[str, Any]) -> dict[str, str]:
    """`w0`, `w1`, …: whether a row is one of each window's PR/push results (for _flagged)."""
    flags = {}
    for n, window in enumerate(windows):
        params |= {f"from{n}": window.start, f"to{n}": window.end}
        flags[f"w{n}"] = (
            f"received_at >= {{from{n}:DateTime64(6, 'UTC')}} AND "
            f"received_at < {{to{n}:DateTime64(6, 'UTC')}} AND "
            f"event_type IN {q.in_list(f'rev{n}_', Kind.PR.events, params)}"
        )
    return flags


def _readiness_columns(windows: int) -> list[str]:
    """Each window's readiness times over the rows flagged `w<n>`, two columns a window; its
    counts are those of the rows with its flag in a tally (_readiness)."""
    columns = []
    for n in range(windows):
        queue = f"w{n} AND run_attempt = 1 AND queue_time IS NOT NULL"
        columns.append(q.average("queue_time", queue))
        columns += q.percentiles(
            "queue_time + execution_time", f"w{n} AND status = 'completed'", 0.5
        )
    return columns


# What the summary and readiness figures read of a record.
FLAGGED_SOURCE = (
    "downstream_repo",
    "delivery_id",
    "repo_display",
    "level",
    "received_at",
    "status",
    "conclusion",
    "pr_number",
    "execution_time",
    "queue_time",
    "run_attempt",
    "head_sha",
    "event_type",
)


def _flagged(flags: dict[str, str], where: str) -> str:
    """A subquery of the records matching `where` with each flag's condition as a column of
    that name: the aggregates over it then say `countIf(w0 AND …)`, not the whole condition
    again. Spelling a window's condition into every aggregate made ClickHouse's analyser, not
    the read, the cost of the repo page's one query (20 of 26 ms for ~7,000 records)."""
    named = ", ".join(f"{condition} AS {name}" for name, condition in flags.items())
    return f"(SELECT {', '.join(FLAGGED_SOURCE)}, {named} FROM {q.TABLE} FINAL WHERE {where})"


def _readiness(
    windows: Sequence[Window], times: Sequence[Any], tally: "_Tally", *, upstream: int | None = None
) -> list[ReadinessMetrics]:
    """Each window's figures: its _readiness_columns `times`, and the counts of the rows with
    its flag in `tally` (window n's: flag bit n)."""
    return [
        ReadinessMetrics.of(
            window.days,
            tally.counts(flag=n, upstream=upstream),
            times[2 * n + 1],
            times[2 * n],
        )
        for n, window in enumerate(windows)
    ]
