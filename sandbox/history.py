"""A small, realistic history for `make demo`: two weeks of results so every page has data.

Deterministic (seeded): PRs with several pushes, shard families, re-runs, a few failures and
timeouts (some failures with a triage verdict, a few of them the upstream change's fault, for
the HUD's triage toggle), nightly runs, and the probe's expected outcomes. Written once, into
an empty HUD.
"""

import random
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from allowlist.entry import Level
from allowlist.lookup import snapshot
from hud.models import JobRecord, UpstreamPull
from hud.reports import PROBE_EXPECTATIONS
from relay.models import Delivery
from sandbox import workload

TITLES = (
    "Fix aliasing in torch.compile for views",
    "Add bf16 support to scaled_dot_product_attention",
    "[inductor] Fuse pointwise ops after reductions",
    "Refactor dispatcher registration for PrivateUse1",
    "Speed up DataLoader worker startup",
    "Deprecate legacy autograd.Function signature",
)


def load(days: int = 14, prs: int = 24, seed: int = 7, *, time_scale: float = 1.0) -> int:
    """Write the history unless the HUD has records already; how many records were written.
    Its jobs' durations are on the demo's clock, `time_scale` times faster than real CI
    (sandbox/workload.py)."""
    if JobRecord.objects.exists():
        return 0
    rng = random.Random(seed)  # noqa: S311 (demo data, not secrets)
    now = timezone.now()
    repos = [e for e in snapshot().entries if e.level != Level.L1]
    probe = settings.CRCR_PROBE_REPO.casefold()
    records: list[JobRecord] = []
    deliveries: list[Delivery] = []
    pulls: dict[int, UpstreamPull] = {}
    for n in range(prs):
        number = 1000 + n
        author = rng.choice(("alice", "bob", "chen", "dana"))
        title = rng.choice(TITLES)
        for push in range(rng.randint(1, 3)):
            at = now - timedelta(days=rng.uniform(0, days), hours=push)
            sha = f"{rng.getrandbits(160):040x}"
            delivery = f"demo-{number}-{push}"
            deliveries.append(
                _delivery(delivery, number=number, sha=sha, title=title, author=author, at=at)
            )
            upstream = settings.CRCR_UPSTREAM_REPO
            pulls[number] = UpstreamPull(
                number=number, upstream_repo=upstream, title=title, author=author, updated_at=at
            )
            for entry in repos:
                if "pull_request" not in entry.sorted_events():
                    continue
                for job in workload.jobs(probe=entry.key == probe):
                    records += _attempts(
                        rng,
                        repo=entry.repo,
                        level=entry.level,
                        delivery=delivery,
                        number=number,
                        sha=sha,
                        job=job,
                        at=at,
                        time_scale=time_scale,
                    )
    for day in range(days):
        at = now - timedelta(days=day, hours=3)
        sha = f"{rng.getrandbits(160):040x}"
        for entry in repos:
            if "nightly" in entry.sorted_events() and entry.key != probe:
                records += _attempts(
                    rng,
                    repo=entry.repo,
                    level=entry.level,
                    delivery=f"nightly-{day}",
                    number=0,
                    sha=sha,
                    job="build",
                    at=at,
                    time_scale=time_scale,
                    flaky=0.1,
                    event="nightly",
                )
    with transaction.atomic():
        Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
        UpstreamPull.objects.bulk_create(pulls.values(), ignore_conflicts=True)
        JobRecord.objects.bulk_create(records, ignore_conflicts=True)
    return len(records)


def _delivery(
    delivery_id: str, *, number: int, sha: str, title: str, author: str, at: datetime
) -> Delivery:
    return Delivery(
        delivery_id=delivery_id,
        event="pull_request",
        action="synchronize",
        upstream_repo=settings.CRCR_UPSTREAM_REPO,
        pr_number=number,
        head_sha=sha,
        title=title,
        author=author,
        body="{}",
        received_at=at,
    )


def _attempts(
    rng: random.Random,
    *,
    repo: str,
    level: str,
    delivery: str,
    number: int,
    sha: str,
    job: str,
    at: datetime,
    time_scale: float,
    flaky: float | None = None,
    event: str = "pull_request",
) -> list[JobRecord]:
    """One job's attempts: a failure is re-run once, half the time."""
    expected = PROBE_EXPECTATIONS
    profile = workload.profile(repo, level)
    attempts = []
    for attempt in (1, 2):
        ran = workload.attempt(rng, profile, job, time_scale=time_scale, flaky=flaky)
        conclusion = ran.conclusion
        failed = conclusion == "failure" and job not in expected
        started = at + timedelta(minutes=attempt * 70)
        run = rng.randint(10**9, 10**10)
        attempts.append(
            JobRecord(
                downstream_repo=repo.casefold(),
                delivery_id=delivery,
                workflow_name="CI",
                job_name=job,
                check_run_id=str(run * 10 + attempt),  # numeric, as GitHub's job ids are
                repo_display=repo,
                upstream_repo=settings.CRCR_UPSTREAM_REPO,
                event_type=event,
                level=level,
                pr_number=number,
                head_sha=sha,
                workflow_run_url=f"https://github.com/{repo}/actions/runs/{run}",
                run_id=str(run),
                run_attempt=attempt,
                status="completed",
                conclusion=conclusion,
                queue_time=round(ran.queue, 1),
                execution_time=round(ran.execution, 1),
                tests_passed=980 if conclusion == "failure" else 1000,
                tests_total=1000,
                failed_tests_detail=[
                    {"name": f"test_ops.py::TestCommon::test_{job}_{i}", "message": "mismatch"}
                    for i in range(20)
                ]
                if conclusion == "failure"
                else None,
                triage_verdict=_verdict(run) if failed else None,
                received_at=started,
                updated_at=started,
            )
        )
        if conclusion != "failure" or job in expected or rng.random() < 0.5:
            break
    return attempts


# A failure's triage verdict, by its run id (drawn already: the history's dice stay as they
# were): a third put on the upstream change, a third flaky, the rest not triaged.
VERDICTS = (
    {
        "category": "upstream",
        "confidence": "high",
        "summary": "the upstream PR broke it",
        "links": [],
    },
    {"category": "flaky", "confidence": "medium", "summary": "passes on a re-run", "links": []},
    None,
)


def _verdict(run: int) -> dict[str, Any] | None:
    verdict = VERDICTS[run % len(VERDICTS)]
    return dict(verdict) if verdict is not None else None
