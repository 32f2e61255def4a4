"""Stage 5: the record of an accepted callback, all or nothing.

A PR/push callback's write is one statement on PostgreSQL (the store's `upsert_guarded`): the
caller's replay key and, only if it was unused (and, on the fast path, only while the allowlist
it was decided on is still the committed one), the HUD row, the forward outbox row, the audit
row and, for a completed L3/L4 PR job, the upstream PR comment's bump
(relay/upstream_pr/comment.py).
A self-report (nightly, periodic) is one transaction: the replay key first, then the record,
written once. Which upstream PR, SHA and repository a result belongs to comes from our dispatch
record, never from the echoed payload.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from allowlist.entry import Entry, Level
from crcr_site import sql
from crcr_site.errors import Dependency, Refused, Unavailable
from hud.storage import HudRecord, RecordExists, get_store, workflow_fields
from relay import hud_forward, state
from relay.callbacks.audit import Audit
from relay.callbacks.body import Callback
from relay.callbacks.moves import Move
from relay.callbacks.on_record import DispatchOnRecord, replay_key
from relay.callbacks.policy import REPLAYED
from relay.models import CallbackAudit, ReplayKey
from relay.oidc import Identity
from relay.upstream_pr import check_runs, comment

NOT_KEPT = "the record could not be stored; nothing was kept"


@dataclass(frozen=True)
class Accepted:
    """A callback the policy accepted under its allowlist `entry`."""

    identity: Identity
    callback: Callback
    entry: Entry
    audit: Audit

    @property
    def level(self) -> Level:
        return self.entry.level


def store_transition(
    accepted: Accepted,
    *,
    dispatch: DispatchOnRecord,
    moved: Move,
    result: state.Transition,
    only_if: sql.Condition | None = None,
) -> bool:
    """The record of an accepted transition: False when the token was used, or `only_if` did
    not hold (the transition stays: the caller decides); a failure undoes the transition and
    is Unavailable."""
    try:
        record = record_of(
            accepted,
            pr_number=dispatch.pr_number,
            head_sha=dispatch.head_sha,
            upstream_repo=dispatch.upstream_repo,
            event_type=dispatch.event,
        )
        elapsed = max(0.0, round(moved.now - (result.since or moved.now), 3))
        if moved.status == "in_progress":
            record.queue_time = elapsed
        else:
            record.execution_time = elapsed
        at = timezone.now()
        return get_store().upsert_guarded(
            record,
            now=at,
            guard=sql.Row(
                ReplayKey,
                {"key": replay_key(accepted.identity, accepted.callback), "used_at": at},
                ("key",),
            ),
            alongside=[
                *check_runs.rows_for(
                    accepted.entry,
                    record,
                    pr_number=dispatch.pr_number,
                    head_sha=dispatch.head_sha,
                    upstream_repo=dispatch.upstream_repo,
                    provider=accepted.identity.kind,
                ),
                *hud_forward.outbox_rows(envelope(accepted, record)),
                accepted.audit.row(CallbackAudit.Decision.ACCEPTED, 200, "accepted"),
                *comment.rows_for(accepted, dispatch),
            ],
            only_if=only_if,
        )
    except Exception as exc:
        moved.try_undo()
        if isinstance(exc, DatabaseError):
            raise Unavailable(Dependency.DATABASE, NOT_KEPT) from exc
        raise


def store_self_report(accepted: Accepted) -> None:
    """nightly / periodic: one completed per key, written once, no state machine."""
    callback = accepted.callback
    if callback.status != "completed":
        raise Refused(400, "invalid_status", "nightly/periodic callbacks are completed only")
    upstream = callback.echo_text("repository", "full_name") or settings.CRCR_UPSTREAM_REPO
    head = callback.echo_text("head_sha") or callback.delivery_id
    record = record_of(
        accepted,
        pr_number=0,
        head_sha=head[:100],
        upstream_repo=upstream[:140],
        event_type=callback.event_type,
    )
    try:
        with transaction.atomic():
            _spend_replay_key(accepted, timezone.now())
            get_store().insert_new(record, now=timezone.now())
            hud_forward.queue(envelope(accepted, record))
            accepted.audit.write(CallbackAudit.Decision.ACCEPTED, 200, "accepted")
    except RecordExists:
        raise Refused(409, "duplicate", "this result has already been reported") from None
    except DatabaseError as exc:
        raise Unavailable(Dependency.DATABASE, NOT_KEPT) from exc


def _spend_replay_key(accepted: Accepted, now: datetime) -> None:
    """The first statement of a self-report's transaction: if the token was used, nothing
    else has happened yet, and raising leaves the transaction, which rolls it back."""
    try:
        key = replay_key(accepted.identity, accepted.callback)
        sql.insert_row(sql.Row(ReplayKey, {"key": key, "used_at": now}))
    except IntegrityError:
        raise Refused(409, "replayed", REPLAYED) from None


def record_of(
    accepted: Accepted, *, pr_number: int, head_sha: str, upstream_repo: str, event_type: str
) -> HudRecord:
    identity, callback = accepted.identity, accepted.callback
    return HudRecord(
        key=callback.key(identity.repo_key),
        repo_display=identity.repo,
        upstream_repo=upstream_repo,
        event_type=event_type,
        level=accepted.level.value,
        pr_number=pr_number,
        head_sha=head_sha,
        **workflow_fields(callback.workflow),
    )


def envelope(accepted: Accepted, record: HudRecord) -> dict[str, Any]:
    """Contract section 3's record: what we verified, and the callback verbatim."""
    return {
        "trusted": {
            "verified_repo": accepted.identity.repo,
            "downstream_repo_level": accepted.level.value,
            "ci_metrics": {
                "queue_time": record.queue_time,
                "execution_time": record.execution_time,
            },
        },
        "untrusted": {"callback_payload": accepted.callback.body},
    }
