"""Records that arrive as envelopes (POST /api/crcr/results): from PyTorch's relay, or ours."""

from django.utils import timezone

from hud.models import JobRecord
from hud.records import Envelope
from hud.storage import HudRecord, RecordKey, get_store


def record_of(envelope: Envelope) -> HudRecord:
    """The HUD record an envelope describes; PR and SHA come from its echoed payload."""
    workflow = envelope.workflow
    completed = workflow.status == "completed"
    tests = (workflow.test_results or {}) if completed else {}
    return HudRecord(
        key=RecordKey(
            envelope.verified_repo.casefold(),
            envelope.delivery_id,
            workflow.name,
            envelope.job_name,
            envelope.check_run_id,
        ),
        repo_display=envelope.verified_repo,
        source=JobRecord.Source.INGEST,
        upstream_repo=envelope.upstream_repo,
        event_type=envelope.event_type,
        level=envelope.level,
        pr_number=envelope.pr_number,
        head_sha=envelope.head_sha,
        workflow_run_url=workflow.url,
        run_id=workflow.run_id,
        run_attempt=workflow.run_attempt,
        status=workflow.status,
        conclusion=workflow.conclusion if completed else None,
        queue_time=envelope.queue_time,
        execution_time=envelope.execution_time,
        started_at=workflow.started_at,
        completed_at=workflow.completed_at if completed else None,
        tests_passed=tests.get("passed"),
        tests_failed=tests.get("failed"),
        tests_skipped=tests.get("skipped"),
        tests_total=tests.get("total"),
        failed_tests_detail=workflow.failed_tests_detail,
        artifact_url=workflow.artifact_url,
        triage_verdict=workflow.triage_verdict,
    )


def ingest(envelope: Envelope) -> HudRecord:
    record = record_of(envelope)
    if record.upstream_repo is None:
        from django.conf import settings

        record.upstream_repo = settings.CRCR_UPSTREAM_REPO
    get_store().upsert(record, now=timezone.now())
    return record
