"""What the relay forgets and when (relay/retention.py): each table pruned at its own age,
oldest first, nothing younger touched."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from hud.models import Dispatched
from relay import retention
from relay.models import CallbackAudit, HudForward, ReplayKey, WorkerHeartbeat

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _audit(age: timedelta, reason: str) -> None:
    CallbackAudit.objects.create(
        at=NOW - age, decision="accepted", status=200, reason=reason, repo="org/repo"
    )


def _forward(status: str, created_age: timedelta, sent_age: timedelta | None = None) -> int:
    row = HudForward.objects.create(envelope={}, status=status, next_attempt_at=NOW)
    HudForward.objects.filter(pk=row.pk).update(
        created_at=NOW - created_age, sent_at=None if sent_age is None else NOW - sent_age
    )
    return row.pk


def _dispatched(age: timedelta, delivery: str) -> None:
    Dispatched.objects.create(
        repo="Org/Repo", repo_key="org/repo", upstream_repo="pytorch/pytorch",
        event_type="pull_request", pr_number=1, head_sha="a" * 40, delivery_id=delivery,
        dispatched_at=NOW - age,
    )  # fmt: skip


def test_each_table_is_pruned_at_its_own_age(settings, monkeypatch):
    settings.CRCR_AUDIT_RETENTION_DAYS = 30
    monkeypatch.setattr(retention, "BATCH", 2)  # three old audit rows: two batches
    ReplayKey.objects.create(key="used-yesterday", used_at=NOW - timedelta(days=1, minutes=1))
    ReplayKey.objects.create(key="used-today", used_at=NOW - timedelta(hours=23))
    for n in range(3):
        _audit(timedelta(days=31, minutes=-n), f"old-{n}")
    for n in range(2):
        _audit(timedelta(days=29, minutes=-n), f"kept-{n}")
    _forward("sent", timedelta(days=9), timedelta(days=8))
    _dispatched(timedelta(days=91), "old")
    _dispatched(timedelta(days=89), "kept")
    sent_lately = _forward("sent", timedelta(days=7), timedelta(days=6))
    _forward("failed", timedelta(days=31))
    given_up_lately = _forward("failed", timedelta(days=29))
    still_trying = _forward("pending", timedelta(days=40))
    for worker, age in (("killed", timedelta(days=1, minutes=1)), ("alive", timedelta(0))):
        WorkerHeartbeat.objects.create(
            worker_id=worker, host="h", pid=1, started_at=NOW - age, seen_at=NOW - age
        )

    deleted = retention.prune(NOW)

    assert deleted == {
        "replay_keys": 1,
        "forwarded": 1,
        "dispatched": 1,
        "audit": 3,
        "forwards_given_up": 1,
        "heartbeats": 1,
    }
    assert list(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == ["alive"]
    assert list(Dispatched.objects.values_list("delivery_id", flat=True)) == ["kept"]
    assert list(ReplayKey.objects.values_list("key", flat=True)) == ["used-today"]
    assert sorted(CallbackAudit.objects.values_list("reason", flat=True)) == ["kept-0", "kept-1"]
    remaining = set(HudForward.objects.values_list("pk", flat=True))
    assert remaining == {sent_lately, given_up_lately, still_trying}


def test_an_audit_retention_of_zero_keeps_the_audit_for_ever(settings):
    settings.CRCR_AUDIT_RETENTION_DAYS = 0
    _audit(timedelta(days=3650), "ancient")
    _forward("failed", timedelta(days=3650))

    deleted = retention.prune(NOW)

    assert "audit" not in deleted
    assert CallbackAudit.objects.count() == HudForward.objects.count() == 1


def test_the_command_prunes_and_says_what(settings):
    settings.CRCR_AUDIT_RETENTION_DAYS = 1
    _audit(timedelta(days=400), "old")

    from io import StringIO

    out = StringIO()
    call_command("prune", stdout=out)

    assert "1 audit" in out.getvalue()
    assert CallbackAudit.objects.count() == 0
