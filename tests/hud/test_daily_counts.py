"""PostgreSQL's hud_dailycounts, kept by a trigger on hud_jobrecord: after any mix of inserts,
updates (on the same day's row or moving to another, a triage verdict given, changed or taken
back) and deletes, it is what counting the records again gives; and migration 0012 fills the
failures triaged upstream in for the rows already there."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from hud.models import JobRecord

pytestmark = pytest.mark.django_db
LATEST = "0012_daily_counts_upstream_failures"

DAY = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
RECOUNT = """
    SELECT downstream_repo, (received_at AT TIME ZONE 'UTC')::date, event_type,
           count(*) FILTER (WHERE status = 'completed' AND conclusion = 'success'),
           count(*) FILTER (WHERE status = 'completed'
                            AND conclusion IN ('failure', 'startup_failure')),
           count(*) FILTER (WHERE status = 'completed' AND conclusion = 'timed_out'),
           count(*) FILTER (WHERE status = 'completed' AND conclusion = 'cancelled'),
           count(*) FILTER (WHERE status = 'completed'),
           count(*) FILTER (WHERE status <> 'completed'),
           count(*) FILTER (WHERE status = 'completed'
                            AND conclusion IN ('failure', 'startup_failure')
                            AND jsonb_typeof(triage_verdict) = 'object'
                            AND triage_verdict->'category' = '"upstream"')
    FROM hud_jobrecord GROUP BY 1, 2, 3
"""
KEPT = """
    SELECT downstream_repo, day, event_type,
           successes, failures, timed_out, cancelled, completed, in_progress, upstream_failures
    FROM hud_dailycounts
    WHERE (successes, failures, timed_out, cancelled, completed, in_progress, upstream_failures)
          <> (0, 0, 0, 0, 0, 0, 0)
"""
UPSTREAM = {"category": "upstream", "confidence": "high"}


def _rows(sql: str) -> set[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return set(cursor.fetchall())


def _job(name: str, status: str = "in_progress", conclusion: str = "", **more) -> JobRecord:
    return JobRecord.objects.create(
        downstream_repo="org/repo", delivery_id="d", workflow_name="CI", job_name=name,
        check_run_id=name, repo_display="org/repo", upstream_repo="pytorch/pytorch",
        head_sha="a" * 40, run_id="1", status=status, conclusion=conclusion,
        received_at=more.pop("received_at", DAY), updated_at=DAY, **more,
    )  # fmt: skip


def _set(job: JobRecord, **changes) -> None:
    JobRecord.objects.filter(pk=job.pk).update(**changes)


def test_the_daily_counts_are_the_records_counted_again():
    jobs = [_job(f"j{n}") for n in range(6)] + [_job("nightly", event_type="nightly")]
    _set(jobs[0], status="completed", conclusion="success")
    _set(jobs[1], status="completed", conclusion="timed_out")
    _set(jobs[1], conclusion="failure")  # a late completed replaces a timeout
    _set(jobs[2], status="completed", conclusion="cancelled")
    _set(jobs[3], workflow_run_url="https://example.com/run")  # nothing countable changes
    _set(jobs[4], received_at=DAY + timedelta(hours=1))  # over midnight: another day's row
    _set(jobs[5], status="completed", conclusion="startup_failure", event_type="push")
    jobs[6].delete()
    JobRecord.objects.filter(job_name="j0").update(status="completed", conclusion="failure")

    assert _rows(KEPT) == _rows(RECOUNT)
    assert len(_rows(RECOUNT)) == 3  # the 20th's pull requests, the 21st's, the 20th's pushes


def test_failures_triaged_upstream_are_counted_as_verdicts_come_change_and_go():
    jobs = [_job(f"t{n}", "completed", "failure") for n in range(5)]
    _set(jobs[0], triage_verdict=UPSTREAM)  # a verdict given later: the same row moves
    _set(jobs[1], triage_verdict=UPSTREAM)
    _set(jobs[1], triage_verdict={"category": "infra"})  # changed: no longer upstream's
    _set(jobs[2], triage_verdict=UPSTREAM, conclusion="startup_failure")
    _set(jobs[2], received_at=DAY + timedelta(hours=1))  # moves to the 21st's row with it
    _set(jobs[3], triage_verdict=["upstream"])  # not an object: not a verdict
    _set(jobs[4], triage_verdict=UPSTREAM)
    jobs[4].delete()
    _job("passed", "completed", "success", triage_verdict=UPSTREAM)  # no failure to leave out
    _job("given", "completed", "failure", triage_verdict=UPSTREAM)  # inserted with one
    _set(jobs[0], status="completed", conclusion="timed_out")  # no longer a failure

    assert _rows(KEPT) == _rows(RECOUNT)
    assert {row[-1] for row in _rows(KEPT)} == {1}  # "given" on the 20th, t2 on the 21st


def test_the_migration_fills_in_the_failures_triaged_upstream_already_recorded():
    before, after = [("hud", "0011_repo_time_index_id")], [("hud", LATEST)]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    _job("old", "completed", "failure", triage_verdict=UPSTREAM)  # counted by 0005's trigger
    _job("other", "completed", "failure", triage_verdict=UPSTREAM, event_type="push")

    MigrationExecutor(connection).migrate(after)

    assert _rows(KEPT) == _rows(RECOUNT)
    assert sorted(row[-1] for row in _rows(KEPT)) == [1, 1]
