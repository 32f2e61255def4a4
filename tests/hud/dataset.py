# ruff: noqa: E501 (a table, one record a line)
"""A small fixed dataset whose every figure was worked out by hand (see the contract tests).

`NOW` is the relay's clock for the windows. Each line: repo, level, event, PR, SHA, job,
attempt, status, conclusion, execution s, queue s, received at.
"""

from datetime import UTC, datetime, timedelta

from hud.models import JobRecord

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PROBE = "pytorch/crcr-test"


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


ROWS = [
    # org/alpha (L2): PR 10 at aaa (test-1 failed, then passed on attempt 2), PR 11 at bbb,
    # a push at ccc, and PR 12 at ddd 20 days ago (outside 14 days).
    ("org/alpha", "L2", "pull_request", 10, "aaa", "build", 1, "completed", "success", 100, 10, at(20, 8)),
    ("org/alpha", "L2", "pull_request", 10, "aaa", "test-1", 1, "completed", "failure", 200, 20, at(20, 8)),
    ("org/alpha", "L2", "pull_request", 10, "aaa", "test-2", 1, "completed", "success", 300, 30, at(20, 8)),
    ("org/alpha", "L2", "pull_request", 10, "aaa", "test-3", 1, "completed", "success", 400, 40, at(20, 8)),
    ("org/alpha", "L2", "pull_request", 10, "aaa", "test-1", 2, "completed", "success", 250, 500, at(20, 9)),
    ("org/alpha", "L2", "pull_request", 11, "bbb", "build", 1, "completed", "timed_out", 600, 60, at(17)),
    ("org/alpha", "L2", "pull_request", 11, "bbb", "test-1", 1, "in_progress", "", None, 5, at(17)),
    ("org/alpha", "L2", "push", 0, "ccc", "build", 1, "completed", "success", 50, 1, at(10)),
    ("org/alpha", "L2", "pull_request", 12, "ddd", "build", 1, "completed", "failure", 70, 7, datetime(2026, 10, 31, 12, tzinfo=UTC)),
    # org/beta (L3): PR 10 green at aaa, red at eee.
    ("org/beta", "L3", "pull_request", 10, "aaa", "build", 1, "completed", "success", 1000, 100, at(18)),
    ("org/beta", "L3", "pull_request", 10, "aaa", "test", 1, "completed", "success", 2000, 200, at(18)),
    ("org/beta", "L3", "pull_request", 10, "eee", "build", 1, "completed", "failure", 1500, 300, at(19)),
    # Org/Gamma: reports L2, is not on the allowlist; cancelled.
    ("Org/Gamma", "L2", "pull_request", 10, "aaa", "build", 1, "completed", "cancelled", 10, 1, at(15)),
    # The probe: xtimeout ended success, which it should not have.
    (PROBE, "L2", "pull_request", 10, "aaa", "xfail", 1, "completed", "failure", 5, 1, at(20, 7)),
    (PROBE, "L2", "pull_request", 10, "aaa", "xcancel", 1, "completed", "cancelled", 5, 1, at(20, 7)),
    (PROBE, "L2", "pull_request", 10, "aaa", "xtimeout", 1, "completed", "success", 5, 1, at(20, 7)),
    (PROBE, "L2", "pull_request", 10, "aaa", "ok", 1, "completed", "success", 5, 1, at(20, 7)),
    (PROBE, "L2", "pull_request", 10, "aaa", "slow", 1, "in_progress", "", None, 1, at(20, 7)),
    # Nightly results of org/alpha.
    ("org/alpha", "L2", "nightly", 0, "nnn", "build", 1, "completed", "success", 5000, None, at(20, 6)),
    ("org/alpha", "L2", "nightly", 0, "mmm", "build", 1, "completed", "failure", 6000, None, at(19, 6)),
]  # fmt: skip
# Triage verdicts, by row: alpha's first failed attempt of test-1 on PR 10 and its nightly
# failure on mmm are the upstream change's fault; beta's red build on eee is a regression.
TRIAGED = {
    1: {"category": "upstream", "confidence": "high", "summary": "fixed by the upstream revert"},
    11: {"category": "regression", "confidence": "medium"},
    19: {"category": "upstream", "confidence": "low"},
}


def recent_noon() -> datetime:
    """The latest noon (UTC) that has passed: seeding with it keeps each row's time of day, so
    a day's rows stay on one day, and every row in the past."""
    now = datetime.now(UTC)
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    return noon if noon <= now else noon - timedelta(days=1)


def seed(using: str = "default", *, now: datetime = NOW) -> list[JobRecord]:
    """The rows in the ORM's database `using`, moved in time so that NOW falls on `now`."""
    return JobRecord.objects.using(using).bulk_create(JobRecord(**row) for row in rows(now=now))


def rows(*, now: datetime = NOW) -> list[dict]:
    """The rows as stored records (field → value), moved in time so that NOW falls on `now`."""
    shift = now - NOW
    records = []
    for n, row in enumerate(ROWS):
        repo, level, event, pr, sha, job, attempt, status, conclusion, execution, queue, when = row
        records.append(
            dict(
                downstream_repo=repo.casefold(),
                delivery_id=f"{event}-{pr}-{sha}",
                workflow_name="CI",
                job_name=job,
                check_run_id=str(n),
                repo_display=repo,
                upstream_repo="pytorch/pytorch",
                event_type=event,
                level=level,
                pr_number=pr,
                head_sha=sha,
                workflow_run_url=f"https://github.com/{repo}/actions/runs/{n}",
                run_id=str(1000 + n),
                run_attempt=attempt,
                status=status,
                conclusion=conclusion,
                queue_time=queue,
                execution_time=execution,
                tests_passed=9 if conclusion == "failure" else None,
                tests_total=10 if conclusion == "failure" else None,
                failed_tests_detail=[{"name": f"test_{i}", "message": "boom"} for i in range(4)]
                if conclusion == "failure"
                else None,
                triage_verdict=TRIAGED.get(n),
                received_at=when + shift,
                updated_at=when + shift,
            )
        )
    return records


def steady(repo: str, level: str, *, now: datetime, jobs: int = 10) -> list[JobRecord]:
    """`jobs` green PR jobs of `repo`, one every 12 hours back from `now`: queued 60 s, ran
    600 s, so every readiness criterion is met (pass rate 100 %, no timeouts, p50 end to end
    660 s, average queue 60 s)."""
    records = []
    for n in range(jobs):
        when = now - timedelta(hours=12 * n + 1)
        records.append(
            JobRecord(
                downstream_repo=repo.casefold(),
                delivery_id=f"steady-{n}",
                workflow_name="CI",
                job_name="build",
                check_run_id=f"steady-{n}",
                repo_display=repo,
                upstream_repo="pytorch/pytorch",
                event_type="pull_request",
                level=level,
                pr_number=100 + n,
                head_sha=f"{n:040x}",
                run_id=str(5000 + n),
                status="completed",
                conclusion="success",
                queue_time=60,
                execution_time=600,
                received_at=when,
                updated_at=when,
            )
        )
    return JobRecord.objects.bulk_create(records)
