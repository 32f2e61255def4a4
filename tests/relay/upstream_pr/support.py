"""What the check-run tests share: the PR every participating repo was dispatched, a job's
callback, and what the simulated GitHub shows."""

from typing import Any

from relay.models import CheckRun
from relay.upstream_pr import check_runs
from tests.relay.support import post_callback, reporter_body, webhook_payload

PR = webhook_payload("pull_request.opened")
HEAD = PR["pull_request"]["head"]["sha"]
L3, L4 = "org-b/l3", "Org-C/L4"


def payload_of(github, repo: str) -> dict:
    return github.dispatches(repo.casefold())[0].body["client_payload"]


def report(client, actions, github, repo, status, *, job="build", conclusion=None, **workflow):
    body = reporter_body(
        payload_of(github, repo), status, job=job, conclusion=conclusion, **workflow
    )
    claims = {"run_attempt": workflow["run_attempt"]} if "run_attempt" in workflow else {}
    answer = post_callback(client, body, actions.mint(repo=repo, **claims))
    assert answer.status_code == 200, answer.content
    return answer


def shown(github, name: str) -> Any:
    """The check run GitHub shows by that name on the head (the newest, as readers list it)."""
    runs = [run for run in github.check_runs(HEAD) if run["name"] == name]
    return runs[-1] if runs else None


def creates(github) -> list:
    return [c for c in github.calls_to("check_run") if c.method == "POST"]


def sent_all() -> bool:
    check_runs.send_due()
    return not CheckRun.objects.filter(status=CheckRun.Status.PENDING).exists()
