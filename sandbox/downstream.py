"""Simulated downstream CI for `make demo`: runners that answer dispatches with callbacks.

For every dispatch the simulated GitHub accepts, a runner starts a few jobs: each reports
`in_progress` after a queueing delay and `completed` after it "ran", with a token from the
simulated GitHub Actions issuer, in the body PyTorch's callback reporter sends.
"""

import json
import logging
import random
import threading
from datetime import UTC, datetime
from typing import Any

import requests

from sandbox.github import SimulatedGitHub
from sandbox.oidc import SimulatedIssuer

logger = logging.getLogger(__name__)

JOBS = ("build", "test (default, 1, 2)", "test (default, 2, 2)")


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


def _run_job(
    issuer: SimulatedIssuer,
    *,
    callback_url: str,
    repo: str,
    client_payload: dict[str, Any],
    job: str,
    run_id: str,
    stop: threading.Event,
) -> None:
    def report(status: str, conclusion: str | None = None) -> None:
        body = reporter_body(
            client_payload,
            status,
            job=job,
            run_id=run_id,
            check_run_id=f"{run_id}-{JOBS.index(job)}",
            conclusion=conclusion,
            url=f"https://github.com/{repo}/actions/runs/{run_id}",
        )
        token = issuer.mint(repo=repo, run_id=run_id)
        try:
            requests.post(
                callback_url,
                data=json.dumps(body),
                timeout=10,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
        except requests.RequestException as exc:
            logger.warning("simulated runner of %s: %s", repo, exc)

    if stop.wait(random.uniform(1, 6)):  # noqa: S311 (made-up data)
        return
    report("in_progress")
    if stop.wait(random.uniform(3, 20)):  # noqa: S311
        return
    report("completed", random.choices(["success", "failure", "cancelled"], [85, 12, 3])[0])  # noqa: S311


def runners(
    github: SimulatedGitHub, issuer: SimulatedIssuer, callback_url: str, stop: threading.Event
) -> None:
    """Answer every new dispatch with a few jobs' callbacks, until `stop` is set."""
    seen = 0
    while not stop.wait(1.0):
        dispatches = github.dispatches()
        for call in dispatches[seen:]:
            run_id = str(random.randint(10**9, 10**10))  # noqa: S311
            client_payload = call.body["client_payload"]
            for job in JOBS[: random.randint(1, len(JOBS))]:  # noqa: S311
                threading.Thread(
                    target=_run_job,
                    daemon=True,
                    args=(issuer,),
                    kwargs=dict(
                        callback_url=callback_url,
                        repo=call.repo,
                        client_payload=client_payload,
                        job=job,
                        run_id=run_id,
                        stop=stop,
                    ),
                ).start()
        seen = len(dispatches)
