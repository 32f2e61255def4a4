"""PostgreSQL's hud_dailycounts, kept by a trigger on hud_jobrecord: after any mix of inserts,
updates (on the same day's row or moving to another) and deletes, it is what counting the
records again gives."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from hud.models import JobRecord

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
RECOUNT = """
    SELECT downstream_repo, (received_at AT TIME ZONE 'UTC')::date, event_type,
           count(*) FILTER (WHERE status = 'completed' AND conclusion = 'success'),
           count(*) FILTER (WHERE status = 'completed'
                            AND conclusion IN ('failure', 'startup_failure')),
           count(*) FILTER (WHERE status = 'completed' AND conclusion = 'timed_out'),
           count(*) FILTER (WHERE status = 'completed' AND conclusion = 'cancelled'),
           count(*) FILTER (WHERE status = 'completed'),
           count(*) FILTER (WHERE status <> 'completed')
    FROM hud_jobrecord GROUP BY 1, 2, 3
"""
KEPT = """
    SELECT downstream_repo, day, event_type,
           successes, failures, timed_out, cancelled, completed, in_progress
    FROM hud_dailycounts
    WHERE (successes, failures, timed_out, cancelled, completed, in_progress)
          <> (0, 0, 0, 0, 0, 0)
"""


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
