"""The HUD's ORM backend (PostgreSQL, SQLite): aggregation in SQL, semantics in hud/reports.py.

Counts, averages and daily buckets are ORM aggregates; percentiles and "the latest attempt of
each job" are window functions (ROW_NUMBER) — standard SQL that PostgreSQL and SQLite both run,
served by the (downstream_repo, received_at) and (pr_number, received_at) indexes.
"""

import functools
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import fields as dataclass_fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, models, transaction
from django.db.models import (
    Avg,
    Case,
    Count,
    F,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
    When,
)
from django.db.models.functions import RowNumber, TruncDate
from django.utils.dateparse import parse_datetime

from crcr_site import sql
from hud.models import DailyCounts, JobRecord
from hud.reports import (
    CELL_SOURCE,
    COUNT_CONDITIONS,
    EVERY_HEAD,
    FAILURES,
    PR_LATEST_SOURCE,
    RED,
    UPSTREAM_CATEGORY,
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
    RepoSummary,
    StaleJob,
    TabCount,
    Window,
    head_runs,
    job_stats_of,
    latest_attempts,
    nearest_ranks,
    overview_measured,
    pr_heads_of,
    pr_of_latest,
    tab_counts_of,
    worst_first,
)
from hud.storage.base import (
    COMPLETED as COMPLETED_STATUS,
)
from hud.storage.base import (
    KEY_FIELDS,
    STORED_JOB_FIELDS,
    HudRecord,
    RecordExists,
    RecordKey,
    RecordStore,
    StoredJob,
)

COMPLETED = Q(status="completed")
# What the times are measured over: completed jobs that measured their execution, and first
# attempts that measured their queue (a re-run's wait is not the queue's).
COMPLETED_TIME = COMPLETED & Q(execution_time__isnull=False)
FIRST_QUEUE = Q(run_attempt=1, queue_time__isnull=False)
# COUNT(status) (never null), not COUNT(id): the time index carries no id (hud/models.py).
COUNTS = {
    "successes": Count("status", filter=COMPLETED & Q(conclusion="success")),
    "failures": Count("status", filter=COMPLETED & Q(conclusion__in=FAILURES)),
    "timed_out": Count("status", filter=COMPLETED & Q(conclusion="timed_out")),
    "cancelled": Count("status", filter=COMPLETED & Q(conclusion="cancelled")),
    "completed": Count("status", filter=COMPLETED),
    "in_progress": Count("status", filter=~COMPLETED),
}
# Failures triaged upstream (hud/reports.py): read only with the toggle, as `upstream_failures`
# (the verdict is not in the covering indexes).
UPSTREAM_FAILURES = Count(
    "status",
    filter=COMPLETED & Q(conclusion__in=FAILURES, triage_verdict__category=UPSTREAM_CATEGORY),
)
REPO = F("downstream_repo")
CELL_FIELDS = ("repo_display", "pr_number", "head_sha", *CELL_SOURCE)


def _per_day(records: QuerySet[JobRecord], *, upstream: bool = False) -> list[dict[str, Any]]:
    grouped = records.annotate(day=TruncDate("received_at")).values("downstream_repo", "day")
    counted = grouped.annotate(**COUNTS, **_upstream(upstream))
    return [dict(row) for row in counted.order_by()]


def _upstream(upstream: bool) -> dict[str, Any]:
    """The aggregate of the failures triaged upstream, when they are to be left out."""
    return {"upstream_failures": UPSTREAM_FAILURES} if upstream else {}


def _series(rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[DailyPoint, ...]]:
    """repo → its days, oldest first, from (repo, day, counts) rows."""
    series: dict[str, list[DailyPoint]] = {}
    for row in sorted(rows, key=lambda r: (r["downstream_repo"], r["day"])):
        series.setdefault(row["downstream_repo"], []).append(DailyPoint(row["day"], _counts(row)))
    return {repo: tuple(points) for repo, points in series.items()}


def _counts(row: Mapping[str, Any]) -> Counts:
    """A row's counts, without its `upstream_failures` (as read) if it has them; `excluded`
    is what sums of counts already left out."""
    counts = Counts(
        **{name: int(row[name] or 0) for name in COUNTS}, excluded=int(row.get("excluded") or 0)
    )
    return counts.excluding(int(row.get("upstream_failures") or 0))


class OrmRecordStore(RecordStore):
    """PostgreSQL or SQLite, through Django's database alias `using`; writes join the caller's
    transaction."""

    def __init__(self, using: str = "default") -> None:
        self.using = using

    # -- writes ------------------------------------------------------------------------------

    def upsert(self, record: HudRecord, *, now: datetime) -> bool:
        return sql.insert_row(self._row(record, now=now), using=self.using) != 0

    def upsert_guarded(
        self,
        record: HudRecord,
        *,
        now: datetime,
        guard: sql.Row,
        alongside: Sequence[sql.Row] = (),
        only_if: sql.Condition | None = None,
    ) -> bool:
        # The record's row is one more link of the caller's chain (sql.insert_if_new: one
        # statement on PostgreSQL), which runs on the default database only.
        if self.using != DEFAULT_DB_ALIAS:
            raise ValueError(f"a guarded upsert runs on {DEFAULT_DB_ALIAS!r}, not {self.using!r}")
        return sql.insert_if_new(guard, [self._row(record, now=now), *alongside], only_if)

    def _row(self, record: HudRecord, *, now: datetime) -> sql.Row:
        # One INSERT ... ON CONFLICT (key) DO UPDATE SET <the carried fields only> WHERE <it
        # may>: atomic on PostgreSQL and SQLite alike, a field a record does not carry is left
        # as it was, and hud.storage.merged's rules hold in SQL (_merge_clause). Plain SQL:
        # every accepted callback runs it (crcr_site/sql.py says why).
        changes = record.carried() | {"updated_at": now}
        return sql.Row(
            JobRecord,
            vars(record.key) | changes | {"received_at": now},
            on_conflict=KEY_FIELDS,
            update=tuple(changes),
            clause=_merge_clause,
        )

    def stored_job(self, key: RecordKey) -> StoredJob | None:
        found = JobRecord.objects.using(self.using).filter(**vars(key))
        row = found.values_list(*STORED_JOB_FIELDS).first()
        return None if row is None else StoredJob(*row)

    def insert_new(self, record: HudRecord, *, now: datetime) -> None:
        values = record.carried() | {"updated_at": now, "received_at": now}
        try:
            with transaction.atomic(using=self.using):
                sql.insert_row(sql.Row(JobRecord, vars(record.key) | values), using=self.using)
        except IntegrityError:
            raise RecordExists(str(record.key)) from None

    def put_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        count = 0
        for batch in itertools.batched(rows, 5000):
            objects = JobRecord.objects.using(self.using)
            objects.bulk_create([JobRecord(**row) for row in batch], ignore_conflicts=True)
            count += len(batch)
        return count

    def rows(self) -> Iterator[dict[str, Any]]:
        fields = [f.name for f in JobRecord._meta.concrete_fields if not f.primary_key]
        records = JobRecord.objects.using(self.using).order_by("id").values(*fields)
        yield from records.iterator(chunk_size=5000)

    # -- reads -------------------------------------------------------------------------------

    def _in(
        self, window: Window, kind: Kind, *, exclude: Sequence[str] = (), only: str | None = None
    ) -> QuerySet[JobRecord]:
        records = JobRecord.objects.using(self.using).filter(
            received_at__gte=window.start, received_at__lt=window.end, event_type__in=kind.events
        )
        if exclude:
            records = records.exclude(downstream_repo__in=exclude)
        return records if only is None else records.filter(downstream_repo=only)

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
        daily = self.daily(
            window, kind, exclude=exclude, only=only, without_upstream=without_upstream
        )
        if connections[self.using].vendor == "postgresql":
            rows = self._measures(window, kind, daily, measured=measured, overview=overview)
        else:
            records = self._in(window, kind, exclude=exclude, only=only)
            rows = self._grouped_measures(
                records, measured=measured, without_upstream=without_upstream
            )
        records = self._in(window, kind, exclude=exclude, only=only)
        newest = self._newest_rows(
            records, {row["downstream_repo"]: row["last_run"] for row in rows}
        )
        summaries = [
            RepoSummary(
                repo=newest[row["downstream_repo"]][0],
                key=row["downstream_repo"],
                level=newest[row["downstream_repo"]][1],
                last_sha=newest[row["downstream_repo"]][2],
                counts=_counts(row),
                prs=row["prs"],
                avg_execution=row["avg_execution"],
                p50_execution=row["p50"],
                p90_execution=row["p90"],
                avg_queue=row["avg_queue"],
                p90_queue=row["q90"],
                last_run=row["last_run"],
                daily=daily.get(row["downstream_repo"], ()),
            )
            for row in rows
        ]
        if overview and measured:
            summaries = [overview_measured(summary) for summary in summaries]
        return sorted(summaries, key=worst_first)

    def _measures(
        self,
        window: Window,
        kind: Kind,
        daily: Mapping[str, tuple[DailyPoint, ...]],
        *,
        measured: bool,
        overview: bool = False,
    ) -> list[dict[str, Any]]:
        """PostgreSQL: each repo's counts summed from its daily series (exact: the series
        covers the window), its times and PRs from one aggregate per repo over the (repo,
        received_at) index, which yields each repo's rows in place: no sort of the window's
        records by repo, and no count that the daily series already holds."""
        if not daily:
            return []
        keys = sorted(daily)
        with connections[self.using].cursor() as cursor:
            cursor.execute(
                _per_repo_sql(
                    (OVERVIEW_SQL if overview else MEASURES_SQL) if measured else LAST_RUN_SQL,
                    len(keys),
                    len(kind.events),
                ),
                [*keys, window.start, window.end, *kind.events],
            )
            found = cursor.fetchall()
        rows = []
        for key, last_run, prs, avg_execution, avg_queue, execution, q90 in found:
            if last_run is None:
                continue
            totals = {
                name: sum(getattr(p.counts, name) for p in daily[key])
                for name in (*COUNTS, "excluded")
            }
            p50, p90 = execution or (None, None)
            rows.append(
                {
                    "downstream_repo": key,
                    **totals,
                    "last_run": last_run,
                    "prs": prs,
                    "avg_execution": avg_execution,
                    "avg_queue": avg_queue,
                    "p50": p50,
                    "p90": p90,
                    "q90": q90,
                }
            )
        return rows

    def _grouped_measures(
        self, records: QuerySet[JobRecord], *, measured: bool, without_upstream: bool = False
    ) -> list[dict[str, Any]]:
        """SQLite: counts and averages in one GROUP BY, percentiles by ROW_NUMBER windows,
        one query per measure (no ordered-set aggregates)."""
        aggregates: dict[str, Any] = {
            **COUNTS,
            **_upstream(without_upstream),
            "last_run": Max("received_at"),
        }
        if measured:
            aggregates |= {
                "prs": Count("pr_number", distinct=True, filter=Q(pr_number__gt=0)),
                "avg_execution": Avg("execution_time", filter=COMPLETED),
                "avg_queue": Avg("queue_time", filter=Q(run_attempt=1)),
            }
        grouped = records.values("downstream_repo").annotate(**aggregates).order_by()
        rows: list[dict[str, Any]] = [dict(row) for row in grouped]
        if not measured:
            return [row | dict.fromkeys(UNMEASURED) | {"prs": 0} for row in rows]
        times = _percentiles(records.filter(COMPLETED_TIME), F("execution_time"))
        queues = _percentiles(records.filter(FIRST_QUEUE), F("queue_time"))
        for row in rows:
            timed = times.get(row["downstream_repo"], {})
            row |= {"p50": timed.get(50), "p90": timed.get(90)}
            row["q90"] = queues.get(row["downstream_repo"], {}).get(90)
        return rows

    def _newest_rows(
        self, records: QuerySet[JobRecord], newest: dict[str, datetime]
    ) -> dict[str, tuple[str, str, str]]:
        """repo key → (display name, level, head SHA) of its newest record: one indexed lookup
        per repo, instead of carrying wide text columns through the aggregate."""
        if not newest:
            return {}
        # Two IN lists (cheap to build for dozens of repos) and the exact pairs kept here.
        rows = records.filter(
            downstream_repo__in=newest, received_at__in=set(newest.values())
        ).order_by("id")
        return {
            key: (name, level, sha)
            for key, name, level, sha, at in rows.values_list(
                "downstream_repo", "repo_display", "level", "head_sha", "received_at"
            )
            if newest[key] == at
        }

    def daily(
        self,
        window: Window,
        kind: Kind,
        *,
        exclude: Sequence[str] = (),
        only: str | None = None,
        without_upstream: bool = False,
    ) -> dict[str, tuple[DailyPoint, ...]]:
        records = self._in(window, kind, exclude=exclude, only=only)
        upstream = without_upstream
        if connections[self.using].vendor != "postgresql":
            return _series(_per_day(records, upstream=upstream))
        # Whole days inside the window from the trigger-kept counts; the two days the window
        # cuts (its first and its last) from the records themselves: exact either way.
        first_whole = window.start.astimezone(UTC).date() + timedelta(days=1)
        last_cut = window.end.astimezone(UTC).date()
        midnight = datetime.combine(first_whole, time(), UTC)
        last_midnight = max(midnight, datetime.combine(last_cut, time(), UTC))
        # Each cut day its own range of the time index (an OR of the two would be read as one
        # filter over the whole window).
        cut = [
            *_per_day(records.filter(received_at__lt=midnight), upstream=upstream),
            *_per_day(records.filter(received_at__gte=last_midnight), upstream=upstream),
        ]
        whole = DailyCounts.objects.using(self.using).filter(
            day__gte=first_whole, day__lt=last_cut, event_type__in=kind.events
        )
        if exclude:
            whole = whole.exclude(downstream_repo__in=exclude)
        if only is not None:
            whole = whole.filter(downstream_repo=only)
        summed = whole.values("downstream_repo", "day").annotate(
            **{name: Sum(name) for name in (*COUNTS, *_upstream(upstream))}
        )
        return _series([*cut, *summed])

    def tab_counts(
        self, window: Window, *, exclude: Sequence[str] = (), only: str | None = None
    ) -> tuple[TabCount, ...]:
        events = [event for kind in Kind for event in kind.events]
        records = JobRecord.objects.using(self.using).filter(
            received_at__gte=window.start, received_at__lt=window.end, event_type__in=events
        )
        if exclude:
            records = records.exclude(downstream_repo__in=exclude)
        if only is not None:
            records = records.filter(downstream_repo=only)
        per_repo = ("event_type", "downstream_repo")
        if connections[self.using].vendor != "postgresql":
            counted = records.values(*per_repo).annotate(n=Count("status")).order_by()
            return tab_counts_of(counted.values_list(*per_repo, "n"))
        # As `daily`: the whole days from the trigger-kept counts, the two days the window
        # cuts from the records (each its own range of the time index).
        first_whole = window.start.astimezone(UTC).date() + timedelta(days=1)
        last_cut = window.end.astimezone(UTC).date()
        midnight = datetime.combine(first_whole, time(), UTC)
        last_midnight = max(midnight, datetime.combine(last_cut, time(), UTC))
        rows: list[tuple[Any, ...]] = []
        for cut in (Q(received_at__lt=midnight), Q(received_at__gte=last_midnight)):
            counted = records.filter(cut).values(*per_repo).annotate(n=Count("status"))
            rows += counted.order_by().values_list(*per_repo, "n")
        whole = DailyCounts.objects.using(self.using).filter(
            day__gte=first_whole, day__lt=last_cut, event_type__in=events
        )
        if exclude:
            whole = whole.exclude(downstream_repo__in=exclude)
        if only is not None:
            whole = whole.filter(downstream_repo=only)
        summed = whole.values(*per_repo).annotate(n=Sum(F("completed") + F("in_progress")))
        rows += summed.order_by().values_list(*per_repo, "n")
        return tab_counts_of(rows)

    def daily_times(
        self, window: Window, kind: Kind, *, exclude: Sequence[str] = ()
    ) -> dict[str, tuple[DailyTimes, ...]]:
        rows: list[tuple[Any, ...]]
        if connections[self.using].vendor == "postgresql":
            # Per repo over the (repo, received_at) index, as the summary's measures: the
            # repos are those the daily counts hold for the window's days (a superset).
            keys = self._counted_repos(window, kind, exclude)
            found = []
            if keys:
                with connections[self.using].cursor() as cursor:
                    cursor.execute(
                        _per_repo_sql(DAILY_TIMES_SQL, len(keys), len(kind.events)),
                        [*keys, window.start, window.end, *kind.events],
                    )
                    found = cursor.fetchall()
            rows = [
                (repo, day, *(queue or (None, None)), *(execution or (None, None)))
                for repo, day, queue, execution in found
            ]
        else:  # no ordered-set aggregates: the day's values, ranked here
            records = self._in(window, kind, exclude=exclude).annotate(day=TruncDate("received_at"))
            execution = Case(When(COMPLETED_TIME, then=F("execution_time")))
            queue = Case(When(FIRST_QUEUE, then=F("queue_time")))
            values: dict[tuple[str, date], tuple[list[float], list[float]]] = {}
            for repo, day, q, e in records.values_list("downstream_repo", "day", queue, execution):
                queues, executions = values.setdefault((repo, day), ([], []))
                if q is not None:
                    queues.append(q)
                if e is not None:
                    executions.append(e)
            rows = []
            for (repo, day), (qs, es) in sorted(values.items()):
                q50, q90 = nearest_ranks(qs, 0.5, 0.9)
                e50, e90 = nearest_ranks(es, 0.5, 0.9)
                rows.append((repo, day, q50, q90, e50, e90))
        series: dict[str, list[DailyTimes]] = {}
        for repo, day, *times in sorted(rows, key=lambda row: (row[0], row[1])):
            series.setdefault(repo, []).append(DailyTimes(day, *times))
        return {repo: tuple(days) for repo, days in series.items()}

    def _counted_repos(self, window: Window, kind: Kind, exclude: Sequence[str]) -> list[str]:
        """The repos the daily counts hold for the window's days (PostgreSQL)."""
        counted = DailyCounts.objects.using(self.using).filter(
            day__gte=window.start.astimezone(UTC).date(),
            day__lte=window.end.astimezone(UTC).date(),
            event_type__in=kind.events,
        )
        if exclude:
            counted = counted.exclude(downstream_repo__in=exclude)
        return sorted(set(counted.values_list("downstream_repo", flat=True)))

    def main_results(
        self, repo_keys: Sequence[str], jobs: Sequence[str], shas: Sequence[str], window: Window
    ) -> list[MainResult]:
        if not repo_keys or not jobs:
            return []
        on_main = Q(event_type__in=Kind.NIGHTLY.events)
        if shas:
            on_main |= Q(event_type="push", head_sha__in=shas)
        records = JobRecord.objects.using(self.using).filter(
            on_main,
            received_at__gte=window.start,
            received_at__lt=window.end,
            downstream_repo__in=repo_keys,
            job_name__in=jobs,
        )
        # The main-results index's own condition, spelled as it is: the planner then knows it
        # may read that partial index.
        records = records.exclude(event_type="pull_request")
        fields = ("downstream_repo", "head_sha", "job_name", "status", "conclusion")
        return latest_attempts(
            MainResult(repo, sha, job, status, conclusion, run_attempt=attempt, at=_aware(at))
            for repo, sha, job, status, conclusion, attempt, at in records.values_list(
                *fields, "run_attempt", "received_at"
            )
        )

    def job_stats(self, repo_key: str, window: Window, kind: Kind) -> list[JobStats]:
        records = self._in(window, kind, only=repo_key).filter(COMPLETED)
        per_head = (
            records.values("job_name", "pr_number", "head_sha")
            .annotate(
                red=Max(Case(When(conclusion__in=RED, then=1), default=0)),
                green=Max(Case(When(conclusion="success", then=1), default=0)),
            )
            .order_by()
        )
        # The ORM compiles the read; its rows are read as plain tuples: a busy repo has
        # thousands of (job, head) pairs, and Django's per-row conversion cost more than SQL.
        statement, params = per_head.query.sql_with_params()
        with connections[self.using].cursor() as cursor:
            cursor.execute(statement, params)
            found = cursor.fetchall()
        return job_stats_of((job, sha, red == 1, green == 1) for job, _, sha, red, green in found)

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
        records = self._in(window, kind, only=repo_key)
        if pr is not None:
            records = records.filter(pr_number=pr)
        names = records.order_by().values_list("job_name", flat=True).distinct()
        columns = tuple(sorted(names))
        rows, total = self._matrix_rows(records, outcome, page, per_page)
        cells, repo = self._latest_cells(records, [(r.pr_number, r.head_sha) for r in rows])
        for row in rows:
            row.cells.update(cells.get((row.pr_number, row.head_sha), {}))
        return MatrixPage(
            repo=repo or repo_key,
            columns=columns,
            rows=tuple(rows),
            page=page,
            pages=max(1, -(-total // per_page)),
            total_rows=total,
        )

    def _matrix_rows(
        self, records: QuerySet[JobRecord], outcome: str | None, page: int, per_page: int
    ) -> tuple[list[MatrixRow], int]:
        latest, params = _latest_sql(records, ("pr_number", "head_sha", "job_name"))
        hits = "1"
        if outcome is not None:
            hits = f"CASE WHEN {OUTCOME_SQL} = %s THEN 1 ELSE 0 END"
            params = [*params, outcome]
        statement = (
            f"WITH latest AS ({latest}), grouped AS ("  # noqa: S608 (built from the ORM's SQL)
            "SELECT pr_number, head_sha, MIN(received_at) AS first_at, "
            f"MAX(received_at) AS last_at, SUM({hits}) AS hits "
            "FROM latest WHERE k = 1 GROUP BY pr_number, head_sha) "
            "SELECT pr_number, head_sha, first_at, last_at, COUNT(*) OVER () FROM grouped "
            "WHERE hits > 0 ORDER BY last_at DESC, pr_number DESC, head_sha LIMIT %s OFFSET %s"
        )
        with connections[self.using].cursor() as cursor:
            cursor.execute(statement, [*params, per_page, (page - 1) * per_page])
            found = cursor.fetchall()
        rows = [MatrixRow(int(r[0]), r[1], _aware(r[2]), _aware(r[3])) for r in found]
        total = int(found[0][4]) if found else 0
        if not found and page > 1:  # past the end: the count still matters for the pager
            total = self._matrix_rows(records, outcome, 1, 1)[1]
        return rows, total

    def _latest_cells(
        self, records: QuerySet[JobRecord], rows: Sequence[tuple[int, str]]
    ) -> tuple[dict[tuple[int, str], dict[str, Cell]], str]:
        """The rows' cells, and the repo's display name ("" without rows)."""
        if not rows:
            return {}, ""
        chosen = records.filter(
            pr_number__in={pr for pr, _ in rows}, head_sha__in={sha for _, sha in rows}
        )
        # One query, read as plain rows: a page has a thousand cells, and Django's value
        # iteration cost more than the query.
        ranked = chosen.values(*CELL_FIELDS).annotate(
            k=_latest_rank(("pr_number", "head_sha", "job_name"))
        )
        inner, params = ranked.order_by().query.get_compiler(using=ranked.db).as_sql()
        statement = (
            f"SELECT pr_number, head_sha, repo_display, {', '.join(CELL_SOURCE)} "  # noqa: S608
            f"FROM ({inner}) latest WHERE k = 1"
        )
        with connections[self.using].cursor() as cursor:
            cursor.execute(statement, params)
            found = cursor.fetchall()
        wanted = set(rows)
        cells: dict[tuple[int, str], dict[str, Cell]] = {}
        name = ""
        for pr_number, head_sha, name_shown, *values in found:
            key = (pr_number, head_sha)
            if key in wanted:
                cell = _cell(values)
                cells.setdefault(key, {})[cell.job_name] = cell
                name = name_shown
        return cells, name

    def pr_with_jobs(
        self, number: int, *, exclude: Sequence[str] = (), jobs_on: str = EVERY_HEAD
    ) -> tuple[PrView, PrJobs]:
        if not 0 < number < 2**31:
            return PrView(number=number, repos=()), {}
        # Plain SQL, one statement: a PR's records are a few thousand rows found through the
        # pr_number index; compiling the read through the ORM and reading model values would
        # cost more than running it.
        scope, params = _pr_scope(number, exclude)
        statement = (
            f"SELECT {', '.join(PR_LATEST_SOURCE)} "  # noqa: S608
            f"FROM (SELECT *, {LATEST_JOB} AS k FROM {JobRecord._meta.db_table} "
            f"WHERE {scope}) latest WHERE k = 1"
        )
        with connections[self.using].cursor() as cursor:
            cursor.execute(statement, params)
            found = cursor.fetchall()
        rows = (_aware_row(dict(zip(PR_LATEST_SOURCE, values, strict=True))) for values in found)
        return pr_of_latest(number, rows, jobs_on=jobs_on, decoded=_json_decoded)

    def readiness(
        self, repo_key: str, window: Window, *, without_upstream: bool = False
    ) -> ReadinessMetrics:
        records = self._in(window, Kind.PR, only=repo_key)
        measured = COMPLETED & Q(queue_time__isnull=False, execution_time__isnull=False)
        end_to_end = F("queue_time") + F("execution_time")
        aggregates: dict[str, Any] = {
            **COUNTS,
            "avg_queue": Avg("queue_time", filter=Q(run_attempt=1)),
        }
        ordered_set = connections[self.using].vendor == "postgresql"
        if ordered_set:
            aggregates["p50"] = NearestRank(Case(When(measured, then=end_to_end)), 0.5)
        row = records.aggregate(**aggregates)
        if not ordered_set:
            row["p50"] = (
                _percentiles(records.filter(measured), end_to_end).get(repo_key, {}).get(50)
            )
        if without_upstream:
            # Apart: the aggregate above reads the covering index alone, and the verdict is
            # not in it (only the toggle pays for reading the table).
            row |= records.aggregate(upstream_failures=UPSTREAM_FAILURES)
        return ReadinessMetrics.of(window.days, _counts(row), row["p50"], row["avg_queue"])

    def outcomes(
        self, repo_key: str, window: Window, kind: Kind
    ) -> dict[tuple[date, str, str, str], int]:
        records = self._in(window, kind, only=repo_key).annotate(day=TruncDate("received_at"))
        grouped = records.values("day", "job_name", "status", "conclusion")
        found = grouped.annotate(n=Count("status")).order_by()
        named = found.values_list("day", "job_name", "status", "conclusion", "n")
        return {(day, job, status, end): n for day, job, status, end, n in named}

    def in_progress_since(self, cutoff: datetime, limit: int) -> list[StaleJob]:
        stale = JobRecord.objects.using(self.using).filter(
            status="in_progress", source=JobRecord.Source.RELAY, updated_at__lt=cutoff
        )
        fields = [f.name for f in dataclass_fields(StaleJob)]
        return [StaleJob(**row) for row in stale.order_by("updated_at").values(*fields)[:limit]]

    def newest(self) -> datetime | None:
        return JobRecord.objects.using(self.using).aggregate(at=Max("received_at"))["at"]

    def first_seen(self, repo_key: str) -> datetime | None:
        return (
            JobRecord.objects.using(self.using)
            .filter(downstream_repo=repo_key)
            .aggregate(at=Min("received_at"))["at"]
        )

    def runs_on_head(self, repo_key: str, head_sha: str, *, since: datetime) -> list[HeadRun]:
        records = JobRecord.objects.using(self.using).filter(
            downstream_repo=repo_key, received_at__gte=since, head_sha=head_sha
        )
        fields = ("run_id", "run_attempt", "status", "conclusion")
        return head_runs(records.exclude(run_id="").values_list(*fields))

    def recent_prs(
        self,
        window: Window,
        *,
        limit: int,
        numbers: Sequence[int] | None = None,
        sha: str | None = None,
        exclude: Sequence[str] = (),
    ) -> list[PrActivity]:
        records = self._in(window, Kind.PR, exclude=exclude).filter(pr_number__gt=0)
        if numbers is not None or sha is not None:
            matching = Q(pr_number__in=list(numbers or ()))
            if sha:  # the PR's newest record need not be on that head: a subquery
                heads = records.filter(head_sha__startswith=sha).values("pr_number")
                matching |= Q(pr_number__in=heads)
            records = records.filter(matching)
        newest = records.values("pr_number").annotate(last=Max("received_at"))
        found = newest.order_by("-last", "-pr_number").values_list("pr_number", "last")[:limit]
        return [PrActivity(number, last) for number, last in found]

    def pr_heads(self, numbers: Sequence[int], *, exclude: Sequence[str] = ()) -> dict[int, PrHead]:
        if not numbers:
            return {}
        scope = f"event_type IN ({_placeholders(len(Kind.PR.events))})"
        scoped: list[Any] = list(Kind.PR.events)
        if exclude:
            scope += f" AND downstream_repo NOT IN ({_placeholders(len(exclude))})"
            scoped += list(exclude)
        numbers = list(numbers)
        params = [*scoped, *numbers, *numbers, *scoped]
        with connections[self.using].cursor() as cursor:
            vendor = connections[self.using].vendor
            cursor.execute(_pr_heads_sql(scope, len(numbers), vendor=vendor), params)
            return pr_heads_of(cursor.fetchall())

    def _received_at(self, at: datetime) -> Any:
        """A receive time as plain SQL on this database binds it."""
        return JobRecord._meta.get_field("received_at").get_db_prep_value(
            at, connections[self.using]
        )

    def heard_from(
        self,
        pairs: Iterable[tuple[str, str]],
        *,
        since: datetime | None = None,
        pr_number: int | None = None,
    ) -> set[tuple[str, str]]:
        # Plain SQL (PostgreSQL and SQLite both): one EXISTS probe of the record key's index
        # per asked pair. The ORM's OR of a Q per repo took longer to compile than its read
        # (10 of 17 ms, 90 pairs), and a join read every record of each delivery (6,700
        # rows for a busy repo's 160 dispatches) to answer 160 yes-or-nos.
        table = JobRecord._meta.db_table
        bounds, bound_params = "", []
        if since is not None:
            bounds += " AND received_at >= %s"
            bound_params.append(self._received_at(since))
        if pr_number is not None:
            bounds += " AND pr_number = %s"
            bound_params.append(pr_number)
        heard: set[tuple[str, str]] = set()
        with connections[self.using].cursor() as cursor:
            for batch in itertools.batched(sorted(set(pairs)), 500):
                values = ", ".join(["(%s, %s)"] * len(batch))
                cursor.execute(
                    f"WITH asked (repo, delivery) AS (VALUES {values}) "  # noqa: S608
                    f"SELECT repo, delivery FROM asked WHERE EXISTS (SELECT 1 FROM {table} "
                    f"WHERE downstream_repo = asked.repo AND delivery_id = asked.delivery"
                    f"{bounds})",
                    [*itertools.chain.from_iterable(batch), *bound_params],
                )
                heard |= {(repo, delivery) for repo, delivery in cursor.fetchall()}
        return heard

    def last_heard(self, repo_keys: Sequence[str], *, since: datetime) -> dict[str, datetime]:
        if not repo_keys:
            return {}
        # One MAX per repo, each a backward step on the (repo, received_at) index; a GROUP BY
        # over the window would read every record in it.
        at = self._received_at(since)
        statement = (
            f"SELECT v.column1, (SELECT MAX(received_at) FROM {JobRecord._meta.db_table} "  # noqa: S608
            "WHERE downstream_repo = v.column1 AND received_at >= %s) "
            f"FROM (VALUES {', '.join(['(%s)'] * len(repo_keys))}) AS v"
        )
        with connections[self.using].cursor() as cursor:
            cursor.execute(statement, [at, *repo_keys])
            found = cursor.fetchall()
        return {key: _aware(newest) for key, newest in found if newest is not None}


@functools.cache
def _merge_clause(update: tuple[str, ...]) -> str:
    """hud.storage.merged's rules as the record upsert's DO UPDATE clause: a late record (the
    stored one completed, this one not) keeps every stored value and only fills empty ones,
    status included; a record from elsewhere leaves one this relay verified as it is."""
    quote = connections["default"].ops.quote_name
    table = quote(JobRecord._meta.db_table)
    status, source = quote("status"), quote("source")
    done = f"'{COMPLETED_STATUS}'"
    late = f"({table}.{status} = {done} AND EXCLUDED.{status} <> {done})"
    assignments = []
    for name in update:
        field = JobRecord._meta.get_field(name)
        assert isinstance(field, models.Field)
        column = quote(str(field.column))
        stored = f"{table}.{column}"
        if name == "status":
            kept = stored
        elif name == "updated_at":
            kept = f"EXCLUDED.{column}"
        elif isinstance(field, models.CharField | models.TextField):
            kept = f"COALESCE(NULLIF({stored}, ''), EXCLUDED.{column})"
        else:
            kept = f"COALESCE({stored}, EXCLUDED.{column})"
        assignments.append(f"{column} = CASE WHEN {late} THEN {kept} ELSE EXCLUDED.{column} END")
    relay = JobRecord.Source.RELAY.value
    return (
        f"SET {', '.join(assignments)} "
        f"WHERE NOT ({table}.{source} = '{relay}' AND EXCLUDED.{source} <> '{relay}')"
    )


def _placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


def _pr_scope(number: int, exclude: Sequence[str]) -> tuple[str, list[Any]]:
    """The WHERE of a PR's records (PR events, not the excluded repos) and its parameters."""
    scope = f"pr_number = %s AND event_type IN ({_placeholders(len(Kind.PR.events))})"
    if exclude:
        scope += f" AND downstream_repo NOT IN ({_placeholders(len(exclude))})"
    return scope, [number, *Kind.PR.events, *exclude]


def _per_repo_sql(measures: str, repos: int, events: int) -> str:
    """`measures` (a SELECT list and any GROUP BY over one repo's records, `r.key` the repo)
    once per repo, each over the (downstream_repo, received_at) index: parameters are the
    repo keys, the window's start and end, then the event types."""
    each = measures.format(table=JobRecord._meta.db_table, events=_placeholders(events))
    return (
        f"SELECT r.key, m.* FROM (VALUES {', '.join(['(%s)'] * repos)}) AS r(key) "  # noqa: S608
        f"CROSS JOIN LATERAL (SELECT {each}) m"
    )


# The summary's times and PRs (nearest-rank percentiles: percentile_disc skips the NULLs, so
# a FILTER keeps what the summary measures: completed jobs' execution, first attempts' queue).
_REPO_WINDOW = (
    "FROM {table} WHERE downstream_repo = r.key AND received_at >= %s AND received_at < %s "
    "AND event_type IN ({events})"
)
MEASURES_SQL = (
    "MAX(received_at), COUNT(DISTINCT pr_number) FILTER (WHERE pr_number > 0), "
    "AVG(execution_time) FILTER (WHERE status = 'completed'), "
    "AVG(queue_time) FILTER (WHERE run_attempt = 1), "
    "percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY execution_time) "
    "FILTER (WHERE status = 'completed'), "
    "percentile_disc(0.9) WITHIN GROUP (ORDER BY queue_time) FILTER (WHERE run_attempt = 1) "
    f"{_REPO_WINDOW}"
)
# What /crcr shows of the measures (reports.overview_measured): one sort of the window's
# records a repo, not three (the distinct PRs and the queue's p90 are the other two).
OVERVIEW_SQL = (
    "MAX(received_at), 0, NULL::float, AVG(queue_time) FILTER (WHERE run_attempt = 1), "
    "percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY execution_time) "
    f"FILTER (WHERE status = 'completed'), NULL::float {_REPO_WINDOW}"
)
LAST_RUN_SQL = (
    f"MAX(received_at), 0, NULL::float, NULL::float, NULL::float[], NULL::float {_REPO_WINDOW}"
)
UNMEASURED = ("avg_execution", "avg_queue", "p50", "p90", "q90")
DAILY_TIMES_SQL = (
    "(received_at AT TIME ZONE 'UTC')::date AS day, "
    "percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY queue_time) "
    "FILTER (WHERE run_attempt = 1), "
    "percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY execution_time) "
    "FILTER (WHERE status = 'completed') "
    f"{_REPO_WINDOW} GROUP BY 1"
)


# 1 for the latest attempt of each job of a repo's head (highest attempt, then newest).
LATEST_JOB = (
    "ROW_NUMBER() OVER (PARTITION BY downstream_repo, head_sha, job_name "
    "ORDER BY run_attempt DESC, received_at DESC, id DESC)"
)


def _sums(among: str = "") -> str:
    """A SUM of each count condition, of the rows that also match `among` if given."""
    also = f"{among} AND " if among else ""
    return ", ".join(f"SUM(CASE WHEN {also}{c} THEN 1 ELSE 0 END)" for c in COUNT_CONDITIONS)


def _pr_heads_sql(scope: str, prs: int, *, vendor: str) -> str:
    """Per PR among `scope`'s records, its latest head (of its newest record) and each repo's
    tally there over its jobs' latest attempts, with the repo's name from its newest record.
    Parameters: `scope`'s, the PR numbers twice, then `scope`'s again.

    Each PR's head is one backward step on the (pr_number, received_at) index, found once
    (MATERIALIZED: inlined, PostgreSQL would run the step again for every record); only the
    records of those heads are ranked, and only the columns the tally reads. On PostgreSQL
    they are ranked in the order of the (PR, head, repo, job, latest attempt) index, which
    holds them all, and the newest record's name is an ordered aggregate: no sort of the
    records and no second window (SQLite, without array_agg, keeps FIRST_VALUE)."""
    table = JobRecord._meta.db_table
    newest = "ORDER BY received_at DESC, id DESC"
    heads = (
        "WITH heads AS MATERIALIZED (SELECT v.column1 AS pr_number, "  # noqa: S608
        f"(SELECT head_sha FROM {table} WHERE pr_number = v.column1 AND {scope} {newest} "
        f"LIMIT 1) AS head_sha FROM (VALUES {', '.join(['(%s)'] * prs)}) AS v) "
    )
    records = (
        f"FROM {table} s JOIN heads h ON s.pr_number = h.pr_number "
        f"AND s.head_sha = h.head_sha WHERE s.pr_number IN ({_placeholders(prs)}) "
        f"AND {scope}"  # its columns are the records' alone: heads has no such names
    )
    ranked = (
        "ROW_NUMBER() OVER (PARTITION BY s.pr_number, s.head_sha, s.downstream_repo, "
        "s.job_name ORDER BY s.run_attempt DESC, s.received_at DESC, s.id DESC) AS k"
    )
    if vendor == "postgresql":
        latest_sums = _sums("k = 1")
        return (
            f"{heads}SELECT pr_number, head_sha, downstream_repo, (array_agg(repo_display "  # noqa: S608
            f"{newest}))[1], {latest_sums} FROM (SELECT s.pr_number, s.head_sha, "
            "s.downstream_repo, s.status, s.conclusion, s.repo_display, s.received_at, s.id, "
            f"{ranked} {records}) ranked GROUP BY pr_number, head_sha, downstream_repo"
        )
    return (
        f"{heads}SELECT pr_number, head_sha, downstream_repo, MIN(shown), {_sums()} FROM ("  # noqa: S608
        f"SELECT s.pr_number, s.head_sha, s.downstream_repo, s.status, s.conclusion, {ranked}, "
        "FIRST_VALUE(s.repo_display) OVER (PARTITION BY s.pr_number, s.downstream_repo "
        "ORDER BY s.received_at DESC, s.id DESC) "
        f"AS shown {records}) latest WHERE k = 1 GROUP BY pr_number, head_sha, downstream_repo"
    )


JSON_CELL_FIELDS = tuple(  # plain SQL reads them as text on either database
    name for name in CELL_SOURCE if isinstance(JobRecord._meta.get_field(name), models.JSONField)
)


def _cell(values: Sequence[Any]) -> Cell:
    """A Cell from plain SQL's values of CELL_SOURCE, in that order (JSON comes as text)."""
    return Cell.of(_decoded(dict(zip(CELL_SOURCE, values, strict=True))))


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """Plain SQL's row with its JSON decoded (it comes as text) and its time aware."""
    return _json_decoded(_aware_row(row))


def _aware_row(row: dict[str, Any]) -> dict[str, Any]:
    row["received_at"] = _aware(row["received_at"])
    return row


def _json_decoded(row: dict[str, Any]) -> dict[str, Any]:
    for name in JSON_CELL_FIELDS:
        row[name] = json.loads(row[name]) if isinstance(row[name], str | bytes) else row[name]
    return row


# What a cell is, in SQL: its conclusion, or in_progress while it runs.
OUTCOME_SQL = "(CASE WHEN status = 'completed' THEN conclusion ELSE 'in_progress' END)"


class NearestRank(models.Aggregate):
    """PostgreSQL's percentile_disc: the smallest value whose cumulative share reaches the
    fraction, i.e. the value at rank ⌈n·p⌉ (hud/reports.py's nearest rank). NULLs are skipped,
    so a CASE without ELSE filters."""

    function = "percentile_disc"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = models.FloatField()

    def __init__(self, expression: Any, fraction: float, **extra: Any) -> None:
        super().__init__(expression, fraction=float(fraction), **extra)


def _latest_rank(partition: tuple[str, ...]) -> models.Window:
    """1 for the latest attempt of each `partition` (highest attempt, then newest)."""
    return models.Window(
        RowNumber(),
        partition_by=[F(name) for name in partition],
        order_by=[F("run_attempt").desc(), F("received_at").desc(), F("id").desc()],
    )


def _latest_sql(records: QuerySet[JobRecord], partition: tuple[str, ...]) -> tuple[str, list[Any]]:
    """The records' SQL (for the records' own database) with a column `k`: 1 for the latest
    attempt of each `partition`."""
    used = ("id", "downstream_repo", "pr_number", "head_sha", "job_name", "status", "conclusion")
    ranked = records.values(*used, "received_at").annotate(k=_latest_rank(partition)).order_by()
    statement, params = ranked.query.get_compiler(using=ranked.db).as_sql()
    return statement, list(params)


def _percentiles(records: QuerySet[JobRecord], value: Any) -> dict[str, dict[int, float]]:
    """Nearest-rank p50 and p90 of `value` per repo (non-null values only)."""
    ranked = (
        records.annotate(v=value)
        .filter(v__isnull=False)
        .annotate(
            n=models.Window(
                RowNumber(), partition_by=[F("downstream_repo")], order_by=F("v").asc()
            ),
            c=models.Window(Count("id"), partition_by=[F("downstream_repo")]),
        )
        .filter(Q(n=(F("c") + 1) / 2) | Q(n=(F("c") * 9 + 9) / 10))
        .values_list("downstream_repo", "n", "c", "v")
    )
    found: dict[str, dict[int, float]] = {}
    for repo, n, c, v in ranked:
        ranks = found.setdefault(repo, {})
        if n == (c + 1) // 2:
            ranks[50] = v
        if n == (9 * c + 9) // 10:
            ranks[90] = v
    return found


def _aware(value: Any) -> datetime:
    """A timestamp from plain SQL (SQLite gives text)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = parse_datetime(str(value))
    if parsed is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
