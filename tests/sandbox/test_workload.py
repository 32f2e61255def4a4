"""The demo's history and its live simulated jobs follow one profile per repo
(sandbox/workload.py), on one clock, so the pages' figures hold still while the demo runs."""

import random
import statistics

import pytest

from allowlist.models import DownstreamRepo
from hud.models import JobRecord
from sandbox import history, workload

pytestmark = pytest.mark.django_db

SCALE = 60.0


def _live(repo: str, level: str, jobs: int = 4000) -> list[workload.Attempt]:
    rng, profile = random.Random(3), workload.profile(repo, level)  # noqa: S311
    return [workload.attempt(rng, profile, "build", time_scale=SCALE) for _ in range(jobs)]


def _measured(records, name: str) -> list[float]:
    return [value for value in records.values_list(name, flat=True) if value is not None]


def test_live_jobs_queue_run_and_fail_as_the_history_of_their_repo_says():
    DownstreamRepo.objects.create(repo="org/slow", level="L2")
    DownstreamRepo.objects.create(repo="org/gating", level="L4")
    assert history.load(time_scale=SCALE) > 0

    for repo, level in (("org/slow", "L2"), ("org/gating", "L4")):
        past = JobRecord.objects.filter(downstream_repo=repo, event_type="pull_request")
        ran = past.exclude(conclusion="timed_out")
        live = _live(repo, level)
        live_ran = [a for a in live if a.conclusion != "timed_out"]
        p50 = statistics.median(_measured(ran, "execution_time"))
        queue = statistics.median(_measured(past, "queue_time"))
        assert statistics.median(a.execution for a in live_ran) == pytest.approx(p50, rel=0.2)
        assert statistics.median(a.queue for a in live) == pytest.approx(queue, rel=0.25)
        failed = past.filter(conclusion__in=["failure", "timed_out"]).count() / past.count()
        live_failed = sum(a.conclusion != "success" for a in live) / len(live)
        assert live_failed == pytest.approx(failed, abs=0.05)


def test_a_time_scale_shortens_the_history_as_it_does_the_live_jobs():
    DownstreamRepo.objects.create(repo="org/slow", level="L2")
    history.load(time_scale=SCALE)
    longest = workload.EXECUTION[1] * 1.4 / SCALE

    ran = _measured(JobRecord.objects.exclude(conclusion="timed_out"), "execution_time")
    assert max(ran) <= longest
    assert (
        max(a.execution for a in _live("org/slow", "L2") if a.conclusion != "timed_out") <= longest
    )


def test_each_repo_has_its_own_times_the_same_on_every_run():
    one, other = workload.profile("org/one", "L2"), workload.profile("org/other", "L2")

    assert one == workload.profile("Org/One", "L2")
    assert one.execution != other.execution
    assert workload.profile("org/one", "L4").flaky < one.flaky


def test_the_probe_ends_as_expected_on_every_clock():
    rng, profile = random.Random(1), workload.profile("pytorch/crcr-test", "L2")  # noqa: S311

    ended = {job: workload.attempt(rng, profile, job).conclusion for job in workload.PROBE_JOBS}

    assert ended == {"ok": "success", "xfail": "failure", "xcancel": "cancelled",
                     "xtimeout": "timed_out"}  # fmt: skip
