"""The worker's schedule (relay/periodic.py): each job once per interval across workers, and
an idle poll that costs one query."""

import pytest
from django.utils import timezone

from relay.models import PeriodicJob
from relay.periodic import JOBS, run_due_jobs, take_turn

pytestmark = pytest.mark.django_db


def test_a_job_takes_one_turn_per_interval_whichever_worker_asks():
    sweep = next(job for job in JOBS if job.name == "dispatch_sweep")

    turns = [take_turn(sweep), take_turn(sweep)]  # two workers, one after the other

    assert turns == [True, False]
    assert PeriodicJob.objects.filter(name="dispatch_sweep").count() == 1


def test_an_idle_poll_reads_once_and_runs_nothing(django_assert_num_queries):
    run_due_jobs()  # the first poll: every job is due, and gets its row
    # Idle: every job started just now. (Without this, a first poll slower than the shortest
    # interval, check_runs' 0.2 s, left that job due again: the test measured the machine.)
    PeriodicJob.objects.update(last_started_at=timezone.now())
    finished = dict(PeriodicJob.objects.values_list("name", "last_finished_at"))

    with django_assert_num_queries(1):
        run_due_jobs()

    assert dict(PeriodicJob.objects.values_list("name", "last_finished_at")) == finished
