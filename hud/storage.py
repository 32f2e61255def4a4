"""Where HUD records are kept: a swappable backend, as Django's session backends are.

`HUD_STORE` names the backend class (the ORM one by default; ClickHouse comes later). Every
backend keeps contract §3's semantics: one row per key, and a later record for the same key
changes only the fields it carries (`None` is "not carried" and erases nothing).
"""

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.module_loading import import_string

from crcr_site import sql
from hud.models import JobRecord
from hud.records import Workflow

KEY_FIELDS = ("downstream_repo", "delivery_id", "workflow_name", "job_name", "check_run_id")


@dataclass(frozen=True)
class RecordKey:
    downstream_repo: str  # casefolded owner/name
    delivery_id: str
    workflow_name: str
    job_name: str
    check_run_id: str


@dataclass
class HudRecord:
    """One record to store; every field but the key may be None (not carried)."""

    key: RecordKey
    repo_display: str
    source: str = JobRecord.Source.RELAY
    upstream_repo: str | None = None
    event_type: str | None = None
    level: str | None = None
    pr_number: int | None = None
    head_sha: str | None = None
    workflow_run_url: str | None = None
    run_id: str | None = None
    run_attempt: int | None = None
    status: str | None = None
    conclusion: str | None = None
    queue_time: float | None = None
    execution_time: float | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    tests_passed: int | None = None
    tests_failed: int | None = None
    tests_skipped: int | None = None
    tests_total: int | None = None
    failed_tests_detail: list[dict[str, str]] | None = None
    artifact_url: str | None = None
    triage_verdict: dict[str, Any] | None = None

    def carried(self) -> dict[str, Any]:
        """The fields this record sets: everything not None, but the key."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "key"}
        return {name: value for name, value in values.items() if value is not None}


def workflow_fields(workflow: Workflow) -> dict[str, Any]:
    """What a callback's `workflow` sets on its record; completion fields only when completed."""
    completed = workflow.status == "completed"
    tests = (workflow.test_results or {}) if completed else {}
    return {
        "workflow_run_url": workflow.url,
        "run_id": workflow.run_id,
        "run_attempt": workflow.run_attempt,
        "status": workflow.status,
        "conclusion": workflow.conclusion if completed else None,
        "started_at": workflow.started_at,
        "completed_at": workflow.completed_at if completed else None,
        "tests_passed": tests.get("passed"),
        "tests_failed": tests.get("failed"),
        "tests_skipped": tests.get("skipped"),
        "tests_total": tests.get("total"),
        "failed_tests_detail": workflow.failed_tests_detail,
        "artifact_url": workflow.artifact_url,
        "triage_verdict": workflow.triage_verdict,
    }


class RecordExists(Exception):
    pass


class RecordStore:
    """The storage contract every HUD backend implements."""

    def upsert(self, record: HudRecord, *, now: datetime) -> None:
        """Insert the record, or update only the fields it carries."""
        sql.insert_row(self.upsert_row(record, now=now))

    def upsert_row(self, record: HudRecord, *, now: datetime) -> sql.Row:
        """The database row whose write is `upsert`, to join the caller's own statement."""
        raise NotImplementedError

    def insert_new(self, record: HudRecord, *, now: datetime) -> None:
        """Insert the record; RecordExists when its key is already stored (written once)."""
        raise NotImplementedError


class OrmRecordStore(RecordStore):
    """PostgreSQL or SQLite; runs inside the caller's transaction."""

    def upsert_row(self, record: HudRecord, *, now: datetime) -> sql.Row:
        # One INSERT ... ON CONFLICT (key) DO UPDATE SET <the carried fields only>: atomic on
        # PostgreSQL and SQLite alike, and a field a record does not carry is left as it was.
        # Plain SQL: every accepted callback runs it (crcr_site/sql.py says why).
        changes = record.carried() | {"updated_at": now}
        return sql.Row(
            JobRecord,
            vars(record.key) | changes | {"received_at": now},
            on_conflict=KEY_FIELDS,
            update=tuple(changes),
        )

    def insert_new(self, record: HudRecord, *, now: datetime) -> None:
        values = record.carried() | {"updated_at": now, "received_at": now}
        try:
            with transaction.atomic():
                sql.insert(JobRecord, vars(record.key) | values)
        except IntegrityError:
            raise RecordExists(str(record.key)) from None


def get_store() -> RecordStore:
    store: RecordStore = import_string(settings.HUD_STORE)()
    return store
