"""Simulated downstream CI for `make demo`: runners that answer dispatches with callbacks.

For every dispatch the simulated GitHub accepts, a runner starts the repo's jobs: each reports
`in_progress` after it queued and `completed` after it "ran", through the downstream kit's
reporter (kit/report/crcr_report.py, called as the kit's GitHub Action calls it, in this
process) with a token from the simulated GitHub Actions issuer. How long they queue and run and
how they end follow the repo's profile, as the loaded history does (sandbox/workload.py), on
the demo's clock.
"""

import io
import json
import logging
import random
import threading
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from kit.report import crcr_report
from sandbox import workload
from sandbox.github import SimulatedGitHub
from sandbox.oidc import SimulatedIssuer

logger = logging.getLogger(__name__)


def reporter_body(
    client_payload: dict[str, Any],
    status: str,
    *,
    job: str = "build",
    run_id: str = "1111",
    run_attempt: str = "1",
    conclusion: str | None = None,
    **workflow: Any,
) -> dict[str, Any]:
    """What PyTorch's callback reporter sends: the echoed client_payload plus `workflow`,
    with its string ids and its nulls."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return client_payload | {
        "workflow": {
            "schema_version": "1",
            "status": status,
            "conclusion": conclusion if status == "completed" else None,
            "name": "CI",
            "url": f"https://github.com/org/repo/actions/runs/{run_id}",
            "run_id": run_id,
            "run_attempt": run_attempt,
            "job_name": job,
            "check_run_id": "99887766",
            "started_at": now if status == "in_progress" else None,
            "completed_at": now if status == "completed" else None,
            **workflow,
        }
    }


def report(
    issuer: SimulatedIssuer,
    *,
    callback_url: str,
    repo: str,
    client_payload: dict[str, Any],
    job: str,
    job_id: str,
    run_id: str,
    status: str,
    conclusion: str = "",
) -> bool:
    """One callback of a simulated job, sent by the kit's reporter; whether it was recorded
    (its output is logged when not)."""
    environ = {
        "CALLBACK_URL": callback_url,
        "OIDC_TOKEN": issuer.mint(repo=repo, run_id=run_id),
        "CLIENT_PAYLOAD": json.dumps(client_payload),
        "STATUS": status,
        "CONCLUSION": conclusion,
        "WORKFLOW_NAME": "CI",
        "WORKFLOW_URL": f"https://github.com/{repo}/actions/runs/{run_id}",
        "RUN_ID": run_id,
        "RUN_ATTEMPT": "1",
        "JOB_NAME": job,
        "CHECK_RUN_ID": job_id,
        "RETRY_BUDGET": "30",
        "FAIL_ON_ERROR": "true",  # here only to tell the outcome: a thread has no step to fail
    }
    out = io.StringIO()
    if crcr_report.main([], environ, out) == 0:
        return True
    logger.warning("simulated runner of %s: %s", repo, out.getvalue().strip())
    return False


def _run_job(
    issuer: SimulatedIssuer,
    *,
    ran: workload.Attempt,
    stop: threading.Event,
    **job: Any,
) -> None:
    if stop.wait(ran.queue):
        return
    report(issuer, status="in_progress", **job)
    if stop.wait(ran.execution):
        return
    report(issuer, status="completed", conclusion=ran.conclusion, **job)


def runners(
    github: SimulatedGitHub,
    issuer: SimulatedIssuer,
    callback_url: str,
    stop: threading.Event,
    *,
    time_scale: float = 1.0,
) -> None:
    """Answer every new dispatch with its repo's jobs' callbacks, until `stop` is set; the jobs
    queue and run `time_scale` times faster than the repo's real CI would."""
    from allowlist import lookup  # (here: the benchmarks import this module without Django)

    rng = random.Random()  # noqa: S311 (made-up data)
    probe = settings.CRCR_PROBE_REPO.casefold()
    seen = 0
    while not stop.wait(1.0):
        dispatches = github.dispatches()
        for call in dispatches[seen:]:
            run = rng.randint(10**9, 10**10)
            client_payload = call.body["client_payload"]
            entry = lookup.snapshot().get(call.repo.casefold())
            profile = workload.profile(call.repo, entry.level if entry else "L2")
            for n, job in enumerate(workload.jobs(probe=call.repo.casefold() == probe)):
                ran = workload.attempt(rng, profile, job, time_scale=time_scale)
                threading.Thread(
                    target=_run_job,
                    daemon=True,
                    args=(issuer,),
                    kwargs=dict(
                        callback_url=callback_url,
                        repo=call.repo,
                        client_payload=client_payload,
                        job=job,
                        job_id=str(run * 10 + n),  # numeric, as GitHub's job ids are
                        run_id=str(run),
                        ran=ran,
                        stop=stop,
                    ),
                ).start()
        seen = len(dispatches)
