"""Records that arrive as envelopes (POST /api/crcr/results): from PyTorch's relay, or ours."""

from django.conf import settings
from django.utils import timezone

from hud.models import JobRecord
from hud.records import Envelope
from hud.storage import HudRecord, RecordKey, get_store, workflow_fields


def record_of(envelope: Envelope) -> HudRecord:
    """The HUD record an envelope describes; PR and SHA come from its echoed payload."""
    workflow = envelope.workflow
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
        queue_time=envelope.queue_time,
        execution_time=envelope.execution_time,
        **workflow_fields(workflow),
    )


def ingest(envelope: Envelope) -> HudRecord | None:
    """Store an envelope's record; None when a record this relay verified has its key (an
    envelope never changes one: hud.storage.merged)."""
    record = record_of(envelope)
    if record.upstream_repo is None:
        record.upstream_repo = settings.CRCR_UPSTREAM_REPO
    return record if get_store().upsert(record, now=timezone.now()) else None
