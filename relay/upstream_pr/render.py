"""What a check run says to a reviewer: GitHub's check-run body from the state the outbox holds.

No database and no network here (the sender threads call it)."""

from typing import Any
from urllib.parse import quote

from django.conf import settings

from relay.models import CheckRun

FAILED_TESTS_SHOWN = 10
TEXT_LIMIT = 60000  # GitHub refuses output text over 65535 characters
# The button on a failed job's check run (relay/upstream_pr/reruns.py answers it).
RERUN_ACTION = {
    "label": "Re-run failed jobs",
    "description": "Re-run the downstream run's failed jobs",
    "identifier": "crcr_rerun_failed",
}


def failed_test_names(detail: object) -> list[str]:
    """The first failing tests' names, from a callback's `failed_tests_detail`."""
    names = []
    for test in detail if isinstance(detail, list) else []:
        if isinstance(test, dict):
            name = test.get("name") or test.get("test")
            if isinstance(name, str) and name:
                names.append(name[:300])
        if len(names) == FAILED_TESTS_SHOWN:
            break
    return names


def hud_pr_url(pr_number: int) -> str:
    return f"{settings.CRCR_PUBLIC_URL.rstrip('/')}/crcr/pr/{pr_number}"


def check_run_body(row: CheckRun, state: dict[str, Any]) -> dict[str, Any]:
    """The POST/PATCH body (without head_sha, which only a create sends)."""
    status = state.get("status") or "in_progress"
    body: dict[str, Any] = {
        "name": row.name,
        "status": status,
        "external_id": external_id(row, state),
        "output": _output(row, state),
    }
    details = state.get("details_url") or hud_pr_url(row.pr_number)
    if isinstance(details, str) and details.startswith(("https://", "http://")):
        body["details_url"] = details
    if state.get("started_at"):
        body["started_at"] = state["started_at"]
    if status == "completed":
        body["conclusion"] = state.get("conclusion") or "neutral"
        if state.get("completed_at"):
            body["completed_at"] = state["completed_at"]
        if row.kind == CheckRun.Kind.JOB and body["conclusion"] in ("failure", "timed_out"):
            body["actions"] = [RERUN_ACTION]
    return body


def external_id(row: CheckRun, state: dict[str, Any]) -> str:
    """`{run_id}:{pr_number}` (PyTorch's re-run handler takes the part before the colon); an
    aggregate has no run of its own."""
    run = row.run_id if row.kind == CheckRun.Kind.JOB else ""
    return f"{run}:{row.pr_number}"


def _output(row: CheckRun, state: dict[str, Any]) -> dict[str, str]:
    if row.kind == CheckRun.Kind.REPO:
        return _repo_output(row, state)
    status = state.get("status")
    conclusion = state.get("conclusion") if status == "completed" else None
    tests = state.get("tests") or {}
    failed = state.get("failed_tests") or []
    outcome = conclusion or ("queued" if status == "queued" else "in progress")
    title = outcome.replace("_", " ")
    if tests.get("total") is not None or tests.get("failed") is not None:
        title += f" · {_tests_line(tests)}"
    lines = [
        f"**{row.repo}** · {state.get('workflow', '')} / {state.get('job', '')}"
        f" (run {row.run_id}, attempt {row.run_attempt})",
        "",
    ]
    if tests:
        lines.append(f"- Tests: {_tests_line(tests)}")
    if state.get("execution_time") is not None:
        lines.append(f"- Duration: {_duration(state['execution_time'])}")
    if state.get("queue_time") is not None:
        lines.append(f"- Queued: {_duration(state['queue_time'])}")
    lines += _links(row, state)
    output = {"title": title[:255], "summary": "\n".join(lines)}
    if failed:
        shown = "\n".join(f"- `{name}`" for name in failed)
        output["text"] = f"First failing tests:\n\n{shown}"[:TEXT_LIMIT]
    return output


def _repo_output(row: CheckRun, state: dict[str, Any]) -> dict[str, str]:
    status = state.get("status")
    jobs: dict[str, int] = state.get("jobs") or {}
    if state.get("silent"):
        title = "timed out: no job called back"
    elif status == "completed":
        title = str(state.get("conclusion", "")).replace("_", " ")
    else:
        title = "queued: dispatched, no job yet" if status == "queued" else "in progress"
    counted = ", ".join(f"{n} {outcome.replace('_', ' ')}" for outcome, n in sorted(jobs.items()))
    lines = [f"**{row.repo}** on {row.head_sha[:12]}", ""]
    if counted:
        lines.append(f"- Jobs: {counted}")
    lines += _links(row, state)
    return {"title": title[:255], "summary": "\n".join(lines)}


def _links(row: CheckRun, state: dict[str, Any]) -> list[str]:
    links = []
    if isinstance(state.get("details_url"), str):
        links.append(f"- [Downstream run]({state['details_url']})")
    repo_page = f"{settings.CRCR_PUBLIC_URL.rstrip('/')}/crcr/{quote(row.repo)}"
    links.append(
        f"- [This PR on the CRCR HUD]({hud_pr_url(row.pr_number)}) · [{row.repo}]({repo_page})"
    )
    return links


def _tests_line(tests: dict[str, int]) -> str:
    parts = [f"{tests[name]} {name}" for name in ("passed", "failed", "skipped") if name in tests]
    if "total" in tests:
        parts.append(f"{tests['total']} in all")
    return ", ".join(parts)


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"
