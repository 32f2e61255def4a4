"""The body PyTorch's callback reporter sends (no Django here: the benchmarks use it too)."""


def reporter_body(
    client_payload: dict,
    status: str,
    *,
    job: str = "build",
    run_id: str = "1111",
    run_attempt: str = "1",
    conclusion: str | None = None,
    **workflow,
) -> dict:
    """What PyTorch's callback reporter sends: the echoed client_payload plus `workflow`,
    with its string ids and its nulls."""
    from datetime import UTC, datetime

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
