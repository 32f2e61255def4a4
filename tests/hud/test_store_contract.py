"""The storage contract (hud/storage/base.py, semantics in hud/reports.py), held to hand-computed
figures on tests/hud/dataset.py — the same assertions for every backend and database."""

from dataclasses import replace
from datetime import date, timedelta

import pytest
from django.db import connections

from crcr_site import sql
from hud.models import JobRecord
from hud.pages import probe_health
from hud.reports import (
    EVERY_HEAD,
    LATEST_HEAD,
    Counts,
    Kind,
    Mark,
    PrActivity,
    TabCount,
    Window,
    judged,
    overview_measured,
)
from hud.storage import HudRecord, RecordExists, RecordKey
from hud.storage.clickhouse.drivers import ChdbDriver, ServerDriver
from hud.storage.clickhouse.store import ClickHouseRecordStore
from hud.storage.orm import OrmRecordStore
from relay.models import ReplayKey
from tests.hud.dataset import NOW, PROBE, at, rows, seed

pytestmark = pytest.mark.django_db(databases=["default", "sqlite"])

D14 = Window(14, NOW)
URL = "https://x.test/r/9"


@pytest.fixture(scope="module")
def chdb_store(tmp_path_factory):
    driver = ChdbDriver(str(tmp_path_factory.mktemp("chdb")))
    store = ClickHouseRecordStore(driver=driver)
    store.migrate()
    yield store
    driver.close()


@pytest.fixture(scope="module")
def connect_store(chdb_store):
    """The same ClickHouse engine through the server driver: clickhouse-connect's client API,
    its parameter binding and its Native-format decoding, with its chdb transport standing in
    for HTTP (no ClickHouse server here is recent enough for clickhouse-connect)."""
    driver = ServerDriver(f"chdb://{chdb_store.driver.path}")
    store = ClickHouseRecordStore(driver=driver)
    # With a server the worker drains the outbox (writes.drain, every second); here the store
    # drains before it reads, as chdb's does, so that the write tests read what they wrote.
    store.owns_engine = True
    yield store
    driver.close()


@pytest.fixture(params=["postgresql", "sqlite", "chdb", "clickhouse-connect"])
def store(request):
    if request.param in ("chdb", "clickhouse-connect"):
        clickhouse = request.getfixturevalue(
            "chdb_store" if request.param == "chdb" else "connect_store"
        )
        clickhouse.driver.command("TRUNCATE TABLE hud_job")
        clickhouse.put_rows(rows())
        return clickhouse
    using = {"postgresql": "default", "sqlite": "sqlite"}[request.param]
    assert connections[using].vendor == request.param
    seed(using)
    return OrmRecordStore(using=using)


def test_a_window_without_records_reads_as_empty(store):
    # A year before the dataset: every window read answers empty, never an error.
    empty = Window(14, NOW - timedelta(days=365))
    for kind in Kind:
        assert store.summary(empty, kind) == []
        assert store.summary(empty, kind, measured=False) == []
        assert store.daily(empty, kind) == {}
        assert store.daily_times(empty, kind) == {}
    assert store.recent_prs(empty, limit=5) == []


def test_each_tabs_count_is_its_repos_with_results_and_their_results(store):
    assert store.tab_counts(D14) == (TabCount(Kind.PR, 4, 17), TabCount(Kind.NIGHTLY, 1, 2))
    assert store.tab_counts(D14, exclude=[PROBE])[0] == TabCount(Kind.PR, 3, 12)
    assert store.tab_counts(D14, only="org/alpha") == (
        TabCount(Kind.PR, 1, 8),  # every attempt, the running one too; PR 12 is older
        TabCount(Kind.NIGHTLY, 1, 2),
    )
    # A day: the window's start included (beta's red build), the day before it not.
    assert store.tab_counts(Window(1, NOW)) == (
        TabCount(Kind.PR, 3, 11),
        TabCount(Kind.NIGHTLY, 1, 1),
    )
    empty = Window(14, NOW - timedelta(days=365))
    assert store.tab_counts(empty) == (TabCount(Kind.PR, 0, 0), TabCount(Kind.NIGHTLY, 0, 0))


def test_a_tabs_count_is_what_its_summary_lists(store):
    tabs = store.tab_counts(Window(30, NOW), exclude=[PROBE])

    for tab in tabs:
        summaries = store.summary(Window(30, NOW), tab.kind, exclude=[PROBE])
        assert (tab.repos, tab.results) == (len(summaries), sum(s.counts.total for s in summaries))


def test_without_upstream_a_failure_triaged_upstream_is_neither_failed_nor_completed(store):
    gamma, beta, alpha = store.summary(D14, Kind.PR, exclude=[PROBE], without_upstream=True)

    # alpha's failed first attempt of test-1 was the upstream change's fault.
    assert alpha.counts == Counts(successes=5, timed_out=1, completed=6, in_progress=1, excluded=1)
    assert (alpha.counts.pass_rate, alpha.timeout_rate) == pytest.approx((5 / 6, 1 / 6))
    assert alpha.daily[-1].counts == Counts(successes=4, completed=4, excluded=1)
    assert (alpha.p50_execution, alpha.p90_execution) == (250, 600)  # times: every job
    assert alpha.avg_queue == pytest.approx(166 / 7)
    assert beta.counts == Counts(successes=2, failures=1, completed=3)  # a regression counts
    assert gamma.counts == Counts(cancelled=1, completed=1)
    (nightly,) = store.summary(D14, Kind.NIGHTLY, without_upstream=True)
    assert nightly.counts == Counts(successes=1, completed=1, excluded=1)


def test_the_triage_toggle_is_off_by_default(store):
    alpha = store.summary(D14, Kind.PR, only="org/alpha")[0]

    assert alpha.counts == Counts(successes=5, failures=1, timed_out=1, completed=7, in_progress=1)
    assert store.readiness("org/alpha", D14).excluded == 0


def test_without_upstream_the_daily_and_unmeasured_reads_leave_them_out_too(store):
    summaries = store.summary(D14, Kind.PR, exclude=[PROBE], without_upstream=True)
    daily = store.daily(D14, Kind.PR, exclude=[PROBE], without_upstream=True)
    unmeasured = store.summary(D14, Kind.PR, exclude=[PROBE], measured=False, without_upstream=True)

    assert daily == {s.key: s.daily for s in summaries}
    assert [(s.counts, s.daily) for s in unmeasured] == [(s.counts, s.daily) for s in summaries]


def test_without_upstream_readiness_counts_without_them(store):
    wide = store.readiness("org/alpha", D14, without_upstream=True)
    narrow = store.readiness("org/alpha", Window(7, NOW), without_upstream=True)

    assert (wide.completed, wide.excluded, wide.p50_end_to_end) == (6, 1, 330)
    assert (wide.pass_rate, wide.timeout_rate) == pytest.approx((5 / 6, 1 / 6))
    assert wide.avg_queue == pytest.approx(166 / 7)
    assert (narrow.completed, narrow.excluded) == (5, 1)
    assert (narrow.pass_rate, narrow.timeout_rate) == pytest.approx((4 / 5, 1 / 5))
    windows = [D14, Window(7, NOW)]
    assert store.readiness_over("org/alpha", windows, without_upstream=True) == [wide, narrow]
    summary, measured, _, _ = store.repo_overview(
        "org/alpha", Window(30, NOW), Kind.PR, windows, without_upstream=True
    )
    assert (
        summary
        == store.summary(Window(30, NOW), Kind.PR, only="org/alpha", without_upstream=True)[0]
    )
    assert measured == [wide, narrow]


def test_only_failures_whose_verdict_says_upstream_are_left_out(store):
    upstream = {"category": "upstream", "confidence": "high"}

    def verdict(job, check_run, conclusion, triage, delivery="pull_request-11-bbb"):
        key = RecordKey("org/alpha", delivery, "CI", job, check_run)
        record = HudRecord(key, "org/alpha", event_type="pull_request", pr_number=11,
                           head_sha="bbb", run_id="1", status="completed",
                           conclusion=conclusion, triage_verdict=triage)  # fmt: skip
        store.upsert(record, now=at(17))

    verdict("build", "5", "timed_out", upstream)  # a timeout: counted as ever
    verdict("test-1", "6", "success", upstream)  # the running job passes: a success is one
    verdict("odd-1", "o-1", "failure", ["upstream"])  # verdicts no edge lets through
    verdict("odd-2", "o-2", "failure", {"category": 5})
    verdict("late", "o-3", "startup_failure", upstream)
    key = RecordKey("org/beta", "pull_request-10-eee", "CI", "build", "11")  # triaged later
    store.upsert(HudRecord(key, "org/beta", status="completed", conclusion="failure",
                           triage_verdict=upstream), now=at(19, 13))  # fmt: skip

    found = store.summary(D14, Kind.PR, exclude=[PROBE], without_upstream=True)
    alpha, beta = (next(s for s in found if s.key == key) for key in ("org/alpha", "org/beta"))

    assert alpha.counts == Counts(
        successes=6, failures=2, timed_out=1, completed=9, excluded=2
    )  # the test-1 attempt and the startup failure
    assert beta.counts == Counts(successes=2, completed=2, excluded=1)
    assert [(p.day, p.counts) for p in beta.daily][-1] == (
        date(2026, 11, 19), Counts(completed=0, excluded=1)
    )  # fmt: skip
    assert store.readiness("org/beta", D14, without_upstream=True).pass_rate == 1.0


def test_an_unmeasured_summary_is_the_summary_without_times_or_prs(store):
    # What the metrics page reads: names, counts, daily series and last runs as the summary's,
    # the times and the PR count left out.
    blank = dict.fromkeys(
        ("avg_execution", "p50_execution", "p90_execution", "avg_queue", "p90_queue")
    )
    for kind in Kind:
        full = store.summary(D14, kind, exclude=[PROBE])
        assert full
        assert store.summary(D14, kind, exclude=[PROBE], measured=False) == [
            replace(s, prs=0, **blank) for s in full
        ]


@pytest.mark.parametrize(
    ("measured", "times", "without_upstream"),
    [(True, False, False), (False, True, False), (True, True, True), (False, False, True)],
)
def test_a_windows_figures_are_its_summary_tab_counts_and_daily_times(
    store, measured, times, without_upstream
):
    for kind in Kind:
        asked = {"exclude": [PROBE], "without_upstream": without_upstream}
        heard_from = ["org/alpha", "org/beta", PROBE, "nobody/here"]
        figures = store.window_figures(
            D14, kind, measured=measured, times=times, heard_from=heard_from, **asked
        )

        assert figures.summaries == store.summary(D14, kind, measured=measured, **asked)
        assert figures.tabs == store.tab_counts(D14, exclude=[PROBE])
        assert figures.times == (store.daily_times(D14, kind, exclude=[PROBE]) if times else {})
        assert figures.heard == store.last_heard(heard_from, since=D14.start)
        assert PROBE in figures.heard  # left out of the figures, not of who was heard


@pytest.mark.parametrize("repo", ["org/alpha", PROBE, "nobody/here"])
@pytest.mark.parametrize("per_kind", [1, 3])
def test_a_repos_recent_runs_are_each_tabs_first_matrix_page(store, repo, per_kind):
    recent = store.recent_runs(repo, Window(30, NOW), per_kind=per_kind)

    for kind in Kind:
        page = store.matrix(repo, Window(30, NOW), kind, per_page=per_kind)
        assert recent.rows[kind] == page.rows
    assert bool(recent.repo) == any(recent.rows.values())


def test_summary_counts_rates_and_percentiles_worst_first(store):
    summaries = store.summary(D14, Kind.PR, exclude=[PROBE])

    assert [(s.repo, s.level) for s in summaries] == [
        ("Org/Gamma", "L2"),
        ("org/beta", "L3"),
        ("org/alpha", "L2"),
    ]
    gamma, beta, alpha = summaries
    assert alpha.counts == Counts(successes=5, failures=1, timed_out=1, completed=7, in_progress=1)
    assert alpha.counts.pass_rate == pytest.approx(5 / 7)
    assert (alpha.p50_execution, alpha.p90_execution) == (250, 600)
    assert alpha.avg_queue == pytest.approx(166 / 7)  # the re-run's 500 s left out
    assert alpha.last_run == at(20, 9)
    assert (alpha.prs, alpha.p90_queue) == (2, 60)
    assert alpha.avg_execution == pytest.approx(1900 / 7)
    assert alpha.timeout_rate == pytest.approx(1 / 7)
    assert beta.counts == Counts(successes=2, failures=1, completed=3)
    assert (beta.p50_execution, beta.p90_execution, beta.avg_queue) == (1500, 2000, 200)
    assert (beta.prs, beta.avg_execution, beta.p90_queue) == (1, 1500, 300)
    assert gamma.counts == Counts(cancelled=1, completed=1)
    assert gamma.counts.pass_rate == 0
    assert (gamma.p50_execution, gamma.p90_execution, gamma.avg_queue) == (10, 10, 1)


def test_summary_has_a_daily_series(store):
    alpha = store.summary(D14, Kind.PR, exclude=[PROBE])[-1]

    assert [(p.day, p.counts) for p in alpha.daily] == [
        (date(2026, 11, 10), Counts(successes=1, completed=1)),
        (date(2026, 11, 17), Counts(timed_out=1, completed=1, in_progress=1)),
        (date(2026, 11, 20), Counts(successes=4, failures=1, completed=5)),
    ]


def test_a_summary_names_the_sha_of_its_newest_record(store):
    pr = {s.key: s.last_sha for s in store.summary(D14, Kind.PR, exclude=[PROBE])}
    nightly = {s.key: s.last_sha for s in store.summary(D14, Kind.NIGHTLY)}

    assert pr == {"org/alpha": "aaa", "org/beta": "eee", "org/gamma": "aaa"}
    assert nightly == {"org/alpha": "nnn"}  # the latest tested upstream commit


def test_daily_times_are_each_days_nearest_rank_queue_and_execution(store):
    times = store.daily_times(D14, Kind.PR, exclude=[PROBE])

    assert sorted(times) == ["org/alpha", "org/beta", "org/gamma"]
    assert [
        (t.day, t.p50_queue, t.p90_queue, t.p50_execution, t.p90_execution)
        for t in times["org/alpha"]
    ] == [
        (date(2026, 11, 10), 1, 1, 50, 50),
        (date(2026, 11, 17), 5, 60, 600, 600),  # the running job's queue counts, not its time
        (date(2026, 11, 20), 20, 40, 250, 400),  # the re-run's 500 s queue left out
    ]
    assert [(t.day, t.p50_execution, t.p90_execution) for t in times["org/beta"]] == [
        (date(2026, 11, 18), 1000, 2000),
        (date(2026, 11, 19), 1500, 1500),
    ]


def test_pr_jobs_are_every_jobs_latest_attempt_per_repo_and_head(store):
    jobs = store.pr_jobs(10, exclude=[PROBE])

    shown = {
        repo: {
            sha: [(j.job_name, j.outcome, j.run_attempt) for j in js] for sha, js in shas.items()
        }
        for repo, shas in jobs.items()
    }
    assert shown == {
        "org/alpha": {
            "aaa": [
                ("build", "success", 1),
                ("test-1", "success", 2),  # the re-run, not the failed first attempt
                ("test-2", "success", 1),
                ("test-3", "success", 1),
            ]
        },
        "org/beta": {"aaa": [("build", "success", 1), ("test", "success", 1)],
                     "eee": [("build", "failure", 1)]},
        "org/gamma": {"aaa": [("build", "cancelled", 1)]},
    }  # fmt: skip
    assert store.pr_jobs(999) == {}
    assert store.pr_jobs(0) == {}


def test_pr_with_jobs_lists_the_jobs_of_the_heads_asked_for(store):
    def listed(jobs_on: str) -> dict[str, dict[str, list[str]]]:
        view, jobs = store.pr_with_jobs(10, exclude=[PROBE], jobs_on=jobs_on)
        assert view == store.pr(10, exclude=[PROBE])  # every head's results, whatever is listed
        return {
            repo: {sha: [j.job_name for j in js] for sha, js in shas.items()}
            for repo, shas in jobs.items()
        }

    assert listed(LATEST_HEAD) == {
        "org/alpha": {"aaa": ["build", "test-1", "test-2", "test-3"]},
        "org/beta": {"eee": ["build"]},  # its latest head; aaa is older
        "org/gamma": {"aaa": ["build"]},
    }
    assert listed("aaa") == {
        "org/alpha": {"aaa": ["build", "test-1", "test-2", "test-3"]},
        "org/beta": {"aaa": ["build", "test"]},
        "org/gamma": {"aaa": ["build"]},
    }
    assert listed("fff") == {"org/alpha": {}, "org/beta": {}, "org/gamma": {}}  # not run there
    assert listed(EVERY_HEAD) == {
        repo: {sha: [j.job_name for j in js] for sha, js in shas.items()}
        for repo, shas in store.pr_jobs(10, exclude=[PROBE]).items()
    }


def test_main_results_are_pushes_of_main_shas_and_nightlies_newest_first(store):
    results = store.main_results(["org/alpha", "org/beta"], ["build"], ["ccc"], D14)

    assert [(r.repo_key, r.head_sha, r.job_name, r.conclusion) for r in results] == [
        ("org/alpha", "nnn", "build", "success"),  # nightlies
        ("org/alpha", "mmm", "build", "failure"),
        ("org/alpha", "ccc", "build", "success"),  # the push of a main SHA; PR rows are not
    ]
    assert store.main_results(["org/alpha"], ["build"], [], D14)[-1].head_sha == "mmm"
    assert store.main_results(["org/alpha"], [], ["ccc"], D14) == []


def test_job_stats_count_heads_failed_and_flaky_per_job(store):
    stats = store.job_stats("org/alpha", D14, Kind.PR)

    assert [(j.job_name, j.heads, j.failed_heads, j.flaky_heads, j.flaky_shas) for j in stats] == [
        ("build", 3, 1, 0, ()),  # PR 10, PR 11 (timed out) and the push; PR 12 is older
        ("test-1", 1, 1, 1, ("aaa",)),  # failed, then passed on attempt 2; the running one
        ("test-2", 1, 0, 0, ()),  # on PR 11 is not counted until it completes
        ("test-3", 1, 0, 0, ()),
    ]
    assert store.job_stats("org/nobody", D14, Kind.PR) == []


def test_a_window_counts_what_was_received_in_it_start_included(store):
    summaries = store.summary(Window(1, NOW), Kind.PR, exclude=[PROBE])

    assert [(s.repo, s.counts.completed, s.counts.pass_rate) for s in summaries] == [
        ("org/beta", 1, 0.0),  # received exactly at the window's start
        ("org/alpha", 5, 0.8),
    ]
    assert (summaries[1].p50_execution, summaries[1].p90_execution) == (250, 400)


def test_nightly_is_its_own_tab(store):
    (alpha,) = store.summary(D14, Kind.NIGHTLY)

    assert alpha.counts == Counts(successes=1, failures=1, completed=2)
    assert (alpha.p50_execution, alpha.p90_execution, alpha.avg_queue) == (5000, 6000, None)
    assert alpha.p90_queue is None  # no queue measured: no percentile of it either, not 0
    days = store.window_figures(D14, Kind.NIGHTLY, times=True).times[alpha.key]
    assert days
    assert all(day.p50_execution is not None for day in days)
    assert {(day.p50_queue, day.p90_queue) for day in days} == {(None, None)}


def _rows(page):
    return [(row.pr_number, row.head_sha) for row in page.rows]


def test_matrix_rows_newest_first_with_each_jobs_latest_attempt(store):
    page = store.matrix("org/alpha", D14, Kind.PR)

    assert page.columns == ("build", "test-1", "test-2", "test-3")
    assert _rows(page) == [(10, "aaa"), (11, "bbb"), (0, "ccc")]
    assert (page.total_rows, page.pages) == (3, 1)
    rerun = page.rows[0].cells["test-1"]
    assert (rerun.run_attempt, rerun.outcome, rerun.execution_time, rerun.queue_time) == (
        2,
        "success",
        250,
        500,
    )
    assert page.rows[1].cells["test-1"].outcome == "in_progress"
    assert "test-2" not in page.rows[1].cells


@pytest.mark.parametrize(
    ("outcome", "rows"),
    [
        ("failure", []),  # test-1 failed, but its latest attempt passed
        ("timed_out", [(11, "bbb")]),
        ("in_progress", [(11, "bbb")]),
        ("success", [(10, "aaa"), (0, "ccc")]),
    ],
)
def test_matrix_filters_rows_by_a_cells_outcome(store, outcome, rows):
    assert _rows(store.matrix("org/alpha", D14, Kind.PR, outcome=outcome)) == rows


def test_matrix_filters_by_pr_and_pages(store):
    assert _rows(store.matrix("org/alpha", D14, Kind.PR, pr=10)) == [(10, "aaa")]
    second = store.matrix("org/alpha", D14, Kind.PR, page=2, per_page=2)
    assert (_rows(second), second.pages, second.total_rows) == ([(0, "ccc")], 2, 3)
    beyond = store.matrix("org/alpha", D14, Kind.PR, page=5, per_page=2)
    assert (_rows(beyond), beyond.total_rows) == ([], 3)


def test_matrix_cell_details(store):
    page = store.matrix("org/alpha", Window(30, NOW), Kind.PR)

    assert _rows(page)[-1] == (12, "ddd")
    cell = page.rows[-1].cells["build"]
    assert (cell.outcome, cell.tests_passed, cell.tests_total) == ("failure", 9, 10)
    assert cell.failed_tests == ("test_0", "test_1", "test_2")
    assert cell.log_url == "https://github.com/org/alpha/actions/runs/8/job/8"  # its job's log


def test_nightly_matrix_rows_are_per_sha(store):
    assert _rows(store.matrix("org/alpha", D14, Kind.NIGHTLY)) == [(0, "nnn"), (0, "mmm")]


def test_a_pr_across_repos_red_first_and_since_which_sha(store):
    view = store.pr(10, exclude=[PROBE])

    assert [(r.repo, r.latest.red, r.red_since) for r in view.repos] == [
        ("org/beta", True, "eee"),
        ("org/alpha", False, None),
        ("Org/Gamma", False, None),
    ]
    beta, alpha, _ = view.repos
    assert [s.head_sha for s in beta.shas] == ["aaa", "eee"]
    assert [cell.job_name for cell in beta.failing] == ["build"]
    assert alpha.latest.counts == Counts(successes=4, completed=4)  # latest attempts only
    assert beta.level == "L3"


def test_a_pr_with_a_timeout_and_a_running_job(store):
    (alpha,) = store.pr(11).repos

    assert alpha.latest.counts == Counts(timed_out=1, completed=1, in_progress=1)
    assert (alpha.red_since, [c.job_name for c in alpha.failing]) == ("bbb", ["build"])


def test_readiness_metrics_over_14_and_7_days(store):
    wide = store.readiness("org/alpha", D14)
    narrow = store.readiness("org/alpha", Window(7, NOW))

    assert (wide.completed, wide.p50_end_to_end) == (7, 330)
    assert (wide.pass_rate, wide.timeout_rate) == pytest.approx((5 / 7, 1 / 7))
    assert wide.avg_queue == pytest.approx(166 / 7)
    assert (narrow.completed, narrow.p50_end_to_end, narrow.avg_queue) == (6, 330, 27.5)
    assert (narrow.pass_rate, narrow.timeout_rate) == pytest.approx((4 / 6, 1 / 6))


def test_outcomes_count_a_repos_records_by_job_and_conclusion(store):
    found = store.outcomes(PROBE, D14, Kind.PR)
    alpha = store.outcomes("org/alpha", D14, Kind.PR)

    day = date(2026, 11, 20)
    assert found == {
        (day, "xfail", "completed", "failure"): 1,
        (day, "xcancel", "completed", "cancelled"): 1,
        (day, "xtimeout", "completed", "success"): 1,
        (day, "ok", "completed", "success"): 1,
        (day, "slow", "in_progress", ""): 1,
    }
    assert store.outcomes(PROBE, D14, Kind.NIGHTLY) == {}
    assert alpha[(day, "test-1", "completed", "failure")] == 1
    assert alpha[(day, "test-1", "completed", "success")] == 1
    assert sum(alpha.values()) == 8
    # The probe's figures: xtimeout passing is the one job not as expected.
    counts, daily = judged(found)
    assert counts == Counts(successes=3, failures=1, completed=4, in_progress=1)
    assert [(point.day, point.counts) for point in daily] == [(day, counts)]


def test_the_probe_health_is_its_newest_runs_against_what_they_expect(store):
    health = probe_health(store, NOW)

    pr, nightly = health.lines
    (run,) = pr.runs
    assert (run.pr_number, run.head_sha, run.jobs, run.as_expected, run.running) == (
        10, "aaa", 5, 3, 1,
    )  # fmt: skip
    assert (run.state, pr.health, nightly.health) == ("unexpected", "degraded", "no_data")
    assert (health.health, health.last_run, health.overdue) == ("degraded", at(20, 7), False)


def test_newest_and_first_seen(store):
    assert store.newest() == at(20, 9)
    assert store.first_seen("org/alpha") == at(20, 9).replace(month=10, day=31, hour=12)


def test_the_overview_reads_only_the_measures_it_shows(store):
    for kind in Kind:
        full = store.summary(D14, kind)
        assert store.summary(D14, kind, overview=True) == [overview_measured(s) for s in full]
        figures = store.window_figures(D14, kind, exclude=[PROBE])
        lean = store.window_figures(D14, kind, exclude=[PROBE], overview=True)
        assert lean.summaries == [overview_measured(s) for s in figures.summaries]
        assert (lean.tabs, lean.heard) == (figures.tabs, figures.heard)
    (alpha, *_) = store.summary(D14, Kind.PR, overview=True, only="org/alpha")
    assert alpha.p50_execution is not None  # what /crcr shows is read
    assert (alpha.prs, alpha.avg_execution, alpha.p90_queue) == (0, None, None)  # not the rest


def test_an_empty_store_has_no_newest_record(store):
    if isinstance(store, ClickHouseRecordStore):
        store.driver.command("TRUNCATE TABLE hud_job")
    else:
        JobRecord.objects.using(store.using).all().delete()

    assert store.newest() is None  # not ClickHouse's epoch for the max of nothing
    assert store.first_seen("org/alpha") is None


def test_a_record_that_completes_moves_its_days_counts(store):
    key = RecordKey("org/alpha", "pull_request-11-bbb", "CI", "test-1", "6")

    store.upsert(HudRecord(key, "org/alpha", status="completed", conclusion="success"), now=NOW)

    (alpha,) = store.summary(D14, Kind.PR, only="org/alpha")
    assert dict((p.day, p.counts) for p in alpha.daily)[date(2026, 11, 17)] == Counts(
        successes=1, timed_out=1, completed=2
    )
    assert alpha.counts == Counts(successes=6, failures=1, timed_out=1, completed=8)
    cell = store.matrix("org/alpha", D14, Kind.PR, pr=11).rows[0].cells["test-1"]
    assert (cell.outcome, cell.queue_time) == ("success", 5)  # not carried: kept


def test_readiness_over_several_windows_is_each_windows_readiness(store):
    windows = [D14, Window(7, NOW)]

    assert store.readiness_over("org/alpha", windows) == [
        store.readiness("org/alpha", window) for window in windows
    ]


def test_a_repos_overview_is_its_summary_its_readiness_and_its_tab_counts(store):
    windows = [D14, Window(7, NOW)]

    asked = ["pull_request-10-aaa", "never-answered", "pull_request-10-eee"]
    summary, measured, tabs, heard = store.repo_overview(
        "org/alpha", Window(30, NOW), Kind.PR, windows, heard_from=asked
    )
    nothing, _, none, unheard = store.repo_overview(
        "nobody/here", D14, Kind.PR, windows, heard_from=asked
    )

    assert summary == store.summary(Window(30, NOW), Kind.PR, only="org/alpha")[0]
    assert measured == store.readiness_over("org/alpha", windows)
    assert tabs == store.tab_counts(Window(30, NOW), only="org/alpha")
    assert any(tab.results for tab in tabs)
    assert nothing is None
    assert none == store.tab_counts(D14, only="nobody/here")
    pairs = [("org/alpha", d) for d in asked]
    assert heard == {d for _, d in store.heard_from(pairs, since=Window(30, NOW).start)}
    assert heard == {"pull_request-10-aaa"}  # eee was beta's
    assert unheard == set()


def test_insert_new_writes_a_key_once(store):
    key = RecordKey("org/alpha", "nightly-x", "CI", "build", "n-1")
    record = HudRecord(key, "org/alpha", event_type="nightly", status="completed",
                       conclusion="success", head_sha="xyz")  # fmt: skip

    store.insert_new(record, now=at(20, 10))
    with pytest.raises(RecordExists):
        store.insert_new(record, now=at(20, 11))

    rows = store.matrix("org/alpha", D14, Kind.NIGHTLY).rows
    assert (rows[0].head_sha, rows[0].last_at) == ("xyz", at(20, 10))


def test_any_text_is_asked_about_as_it_is(store):
    # Quotes, backslashes, control characters and non-ASCII in what a read asks for: each
    # backend's parameters carry them exactly (ClickHouse: inside one array parameter).
    odd = "it's a \\ 'test'\n\t\r ) , (ü🚀"
    key = RecordKey("org/alpha", odd, "CI", odd, "n-1")
    record = HudRecord(key, "org/alpha", event_type="nightly", status="completed",
                       conclusion="failure", head_sha=odd)  # fmt: skip
    store.insert_new(record, now=at(20, 10))

    assert store.heard_from([("org/alpha", odd), ("org/alpha", odd[:-1])]) == {("org/alpha", odd)}
    (found,) = store.main_results(["org/alpha"], [odd], [], D14)
    assert (found.head_sha, found.job_name, found.conclusion) == (odd, odd, "failure")


def _row(store, delivery_id):
    return next(r for r in store.rows() if r["delivery_id"] == delivery_id)


def _stored(store, key):
    """The stored row of `key` as every backend gives it (hud.storage.StoredJob)."""
    job = store.stored_job(key)
    assert job is not None
    return job


@pytest.mark.parametrize("order", ["in_progress first", "completed first"])
def test_a_records_status_only_moves_forward_whatever_the_commit_order(store, order):
    """A job's in_progress write that commits after its completed one (two workers around a
    database outage) fills what is missing and changes nothing else."""
    key = RecordKey("org/alpha", "late-1", "CI", "build", "cr-late")
    started = HudRecord(key, "org/alpha", status="in_progress", queue_time=4.0, run_id="9",
                        run_attempt=1, head_sha="abc", workflow_run_url=URL)  # fmt: skip
    done = HudRecord(key, "org/alpha", status="completed", conclusion="failure", run_id="9",
                     run_attempt=1, execution_time=60.0, tests_passed=10, tests_failed=2,
                     started_at=at(20, 1), completed_at=at(20, 2))  # fmt: skip
    writes = [started, done] if order == "in_progress first" else [done, started]

    for n, record in enumerate(writes):
        assert store.upsert(record, now=at(20, 3 + n)) is True

    row = _row(store, "late-1")
    assert (row["status"], row["conclusion"]) == ("completed", "failure")
    assert (row["queue_time"], row["execution_time"]) == (4.0, 60.0)
    assert (row["tests_passed"], row["tests_failed"], row["head_sha"]) == (10, 2, "abc")
    assert (row["started_at"], row["completed_at"]) == (at(20, 1), at(20, 2))
    assert row["workflow_run_url"] == URL


def test_a_late_in_progress_does_not_replace_what_the_completed_record_says(store):
    key = RecordKey("org/alpha", "late-2", "CI", "build", "cr-late")
    done = HudRecord(key, "org/alpha", status="completed", conclusion="success", run_id="9",
                     head_sha="abc", started_at=at(20, 1))  # fmt: skip
    store.upsert(done, now=at(20, 3))

    late = HudRecord(key, "org/alpha", status="in_progress", run_id="9", head_sha="other",
                     started_at=at(20, 2), queue_time=7.0)  # fmt: skip
    store.upsert(late, now=at(20, 4))

    row = _row(store, "late-2")
    assert (row["status"], row["conclusion"], row["head_sha"]) == ("completed", "success", "abc")
    assert row["started_at"] == at(20, 1)
    assert row["queue_time"] == 7.0  # empty until now: filled


def test_a_record_from_elsewhere_never_changes_one_the_relay_verified(store):
    key = RecordKey("org/alpha", "verified-1", "CI", "build", "cr-v")
    verified = HudRecord(key, "org/alpha", status="completed", conclusion="failure", run_id="9")
    store.upsert(verified, now=at(20, 3))

    forged = HudRecord(key, "org/alpha", source="ingest", status="completed",
                       conclusion="success", run_id="9")  # fmt: skip
    assert store.upsert(forged, now=at(20, 4)) is False

    job = _stored(store, key)
    assert (job.conclusion, job.source) == ("failure", "relay")


def test_envelopes_may_change_their_own_records_and_the_relay_takes_them_over(store):
    key = RecordKey("org/alpha", "ingested-1", "CI", "build", "cr-i")
    first = HudRecord(key, "org/alpha", source="ingest", status="in_progress", run_id="9")
    second = HudRecord(key, "org/alpha", source="ingest", status="completed",
                       conclusion="failure", run_id="9")  # fmt: skip
    relay = HudRecord(key, "org/alpha", status="completed", conclusion="success", run_id="9")

    assert [store.upsert(r, now=at(20, 3 + n)) for n, r in enumerate([first, second, relay])] == [
        True,
        True,
        True,
    ]
    job = _stored(store, key)
    assert (job.conclusion, job.source) == ("success", "relay")


def test_stored_job_is_none_for_an_unknown_key(store):
    assert store.stored_job(RecordKey("org/alpha", "nothing", "CI", "build", "0")) is None


def _guard(key: str) -> sql.Row:
    """A once-only row, as the relay's callback guards its record with its replay key."""
    return sql.Row(ReplayKey, {"key": key, "used_at": NOW}, ("key",))


def test_a_guarded_upsert_writes_once_per_guard_with_its_rows_alongside(
    store, django_assert_num_queries
):
    if getattr(store, "using", "default") != "default":
        pytest.skip("a guarded upsert is one statement on the default database (crcr_site/sql.py)")
    key = RecordKey("org/alpha", "guarded-1", "CI", "build", "cr-g")
    started = HudRecord(key, "org/alpha", status="in_progress", run_id="9")
    done = HudRecord(key, "org/alpha", status="completed", conclusion="success", run_id="9")
    side = sql.Row(ReplayKey, {"key": "beside", "used_at": NOW})

    with django_assert_num_queries(1):  # the relay's callback write: one statement
        first = store.upsert_guarded(started, now=at(20, 3), guard=_guard("g-1"), alongside=[side])
    again = store.upsert_guarded(done, now=at(20, 4), guard=_guard("g-1"))
    unless = store.upsert_guarded(
        done, now=at(20, 5), guard=_guard("g-2"), only_if=sql.Condition("%s = 2", [1])
    )

    assert (first, again, unless) == (True, False, False)
    assert _stored(store, key).status == "in_progress"
    assert sorted(ReplayKey.objects.values_list("key", flat=True)) == ["beside", "g-1"]
    assert store.upsert_guarded(done, now=at(20, 6), guard=_guard("g-3")) is True
    assert (_stored(store, key).status, _stored(store, key).conclusion) == ("completed", "success")


def test_runs_on_a_head_are_failed_by_their_latest_attempt(store):
    def job(run_id, name, attempt, conclusion, *, sha="fff", status="completed", day=20):
        key = RecordKey("org/delta", f"d-{sha}", "CI", name, f"cr-{run_id}-{name}-{attempt}")
        record = HudRecord(key, "org/delta", head_sha=sha, run_id=run_id, run_attempt=attempt,
                           status=status, conclusion=conclusion or None)  # fmt: skip
        store.upsert(record, now=at(day))

    job("77", "build", 1, "success")
    job("77", "test", 1, "failure")
    job("77", "test", 2, "success")  # re-run, passed: nothing left to re-run
    job("78", "build", 1, "success")
    job("78", "test", 1, "cancelled")
    job("79", "build", 1, "", status="in_progress")
    job("80", "build", 1, "failure", sha="ggg")  # another head
    job("81", "build", 1, "failure", day=1)  # before `since`

    runs = store.runs_on_head("org/delta", "fff", since=at(10))

    assert [(r.run_id, r.failed) for r in runs] == [("77", False), ("78", True), ("79", False)]
    assert store.runs_on_head("org/delta", "hhh", since=at(10)) == []


def test_recent_prs_newest_activity_first_within_the_window(store):
    assert store.recent_prs(D14, limit=10, exclude=[PROBE]) == [
        PrActivity(10, at(20, 9)),
        PrActivity(11, at(17)),
    ]  # PR 12 is older than 14 days; the push without a PR is no PR
    assert [p.number for p in store.recent_prs(Window(30, NOW), limit=10)] == [10, 11, 12]
    assert store.recent_prs(D14, limit=1) == [PrActivity(10, at(20, 9))]


def test_recent_prs_narrowed_to_numbers_or_a_head_sha_prefix(store):
    month = Window(30, NOW)

    assert store.recent_prs(month, limit=10, numbers=[11, 99]) == [PrActivity(11, at(17))]
    assert store.recent_prs(month, limit=10, numbers=[]) == []
    # PR 10 matches by an older head (eee) and is still dated by its newest record.
    assert store.recent_prs(month, limit=10, numbers=[12], sha="ee") == [
        PrActivity(10, at(20, 9)),
        PrActivity(12, at(20, 9).replace(month=10, day=31, hour=12)),
    ]
    assert store.recent_prs(month, limit=10, sha="ccc") == []  # a push, not a PR


def test_a_prs_latest_head_with_one_mark_per_repo_that_reported_there(store):
    key = RecordKey("org/delta", "d-13", "CI", "build", "cr-13")
    running = HudRecord(key, "org/delta", event_type="pull_request", pr_number=13,
                        head_sha="hhh", status="in_progress", run_id="1")  # fmt: skip
    store.upsert(running, now=at(20, 10))

    heads = store.pr_heads([10, 11, 12, 13, 99], exclude=[PROBE])

    assert sorted(heads) == [10, 11, 12, 13]
    assert heads[10].head_sha == "aaa"  # its newest record's head (alpha's re-run)
    assert [(m.repo, m.mark, m.counts.completed) for m in heads[10].marks] == [
        ("org/alpha", Mark.GREEN, 4),  # test-1 failed, then passed on attempt 2
        ("org/beta", Mark.GREEN, 2),  # red on eee, a head older than aaa's newest record
        ("Org/Gamma", Mark.NEUTRAL, 1),  # cancelled
    ]
    assert [(m.key, m.mark) for m in heads[11].marks] == [("org/alpha", Mark.RED)]
    assert (heads[12].head_sha, heads[12].marks[0].mark) == ("ddd", Mark.RED)
    assert [(m.key, m.mark) for m in heads[13].marks] == [("org/delta", Mark.PENDING)]
    assert store.recent_prs(D14, limit=1) == [PrActivity(13, at(20, 10))]
    assert store.pr_heads([]) == {}


def test_which_dispatches_were_heard_from_and_when_each_repo_last_was(store):
    asked = [
        ("org/alpha", "pull_request-10-aaa"),
        ("org/alpha", "never-answered"),
        ("org/beta", "pull_request-10-eee"),
        ("org/beta", "pull_request-10-aaa"),
        ("nobody/here", "pull_request-10-aaa"),
    ]

    assert store.heard_from(asked) == {asked[0], asked[2], asked[3]}
    assert store.heard_from([]) == set()
    assert store.heard_from(asked, since=at(19)) == {asked[0], asked[2]}  # beta aaa: at 18
    assert store.heard_from(asked, pr_number=10) == {asked[0], asked[2], asked[3]}
    assert store.heard_from(asked, pr_number=11) == set()  # PR 10's dispatches
    many = [("org/alpha", f"unknown-{n}") for n in range(1200)]  # asked in batches
    assert store.heard_from([*many, asked[0], *many, asked[2]]) == {asked[0], asked[2]}
    repos = ["org/alpha", "org/beta", "org/gamma", PROBE, "nobody/here"]
    assert store.last_heard(repos, since=at(18)) == {
        "org/alpha": at(20, 9),  # its re-run
        "org/beta": at(19),
        PROBE: at(20, 7),
    }  # org/gamma's one record is older
    assert store.last_heard(["org/alpha"], since=at(20, 10)) == {}
    assert store.last_heard([], since=at(18)) == {}


@pytest.mark.parametrize("driver", ["chdb_store", "connect_store"])
def test_clickhouse_sessions_compile_no_expressions(request, driver):
    # drivers.SETTINGS: the first run of each statement paid 20-40 ms of compilation.
    store = request.getfixturevalue(driver)
    names = ("compile_expressions", "compile_aggregate_expressions", "compile_sort_description")
    found = store.driver.select(
        "SELECT name, value FROM system.settings WHERE name IN {names:Array(String)}",
        {"names": list(names)},
    )

    assert sorted(found) == [(name, "0") for name in sorted(names)]
