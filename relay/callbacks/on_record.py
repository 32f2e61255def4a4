"""Stage 2: what the database holds about a callback, the source of truth for deciding it.

`OnRecord.read` is one SELECT of plain SQL (every callback on the full path runs it): the
allowlist's generation token, whether the caller's token was used already, and the dispatch
the callback answers. `stored_job` is what the HUD store holds of the job itself, read only
when Redis lost the job's state or a callback repeats one already recorded.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError
from django.utils.dateparse import parse_datetime

from allowlist import lookup
from crcr_site import sql
from crcr_site.errors import Dependency, Unavailable
from hud.models import JobRecord
from hud.storage import StoredJob, StoreUnavailable, get_store
from relay import state
from relay.callbacks.body import Callback
from relay.models import Delivery, Dispatch, ReplayKey
from relay.oidc import Identity


def replay_key(identity: Identity, callback: Callback | None = None) -> str:
    """The key under which the caller's token is spent (ReplayKey): its jti, once. A token
    without one (Buildkite's) is the same token when a job asks twice within a second, so its
    key is its hash with the report it carries: each of a job's reports spends it once, and
    sending one report again is still a replay."""
    if callback is None or "jti" in identity.claims:
        return identity.replay_key[:200]
    job = callback.key(identity.repo_key)
    fields = [identity.replay_key, job.delivery_id, job.workflow_name, job.job_name]
    spent = "\0".join([*fields, job.check_run_id, callback.status])
    return "sha256:" + hashlib.sha256(spent.encode()).hexdigest()


@dataclass(frozen=True)
class DispatchOnRecord:
    """What a callback needs of our dispatch record: where the result belongs, and when."""

    delivery_id: str
    repo_key: str
    sent: datetime
    pr_number: int
    head_sha: str
    upstream_repo: str
    event: str

    # Table names come from the models; values are bound parameters.
    SQL = (
        "SELECT v.delivery_id, d.repo_key, COALESCE(d.sent_at, d.created_at), v.pr_number, "  # noqa: S608
        "v.head_sha, v.upstream_repo, v.event "
        f"FROM {Dispatch._meta.db_table} d JOIN {Delivery._meta.db_table} v "
        "ON v.id = d.delivery_id WHERE v.delivery_id = %s AND d.repo_key = %s"
    )

    @classmethod
    def of_row(cls, row: tuple[Any, ...]) -> "DispatchOnRecord | None":
        if row[0] is None:
            return None
        sent = row[2] if isinstance(row[2], datetime) else parse_datetime(str(row[2]))
        if sent is None:
            raise DatabaseError(f"unreadable dispatch time {row[2]!r}")
        return cls(row[0], row[1], sent, *row[3:])

    @classmethod
    def of_state(
        cls, delivery_id: str, repo_key: str, moved: state.Transition
    ) -> "DispatchOnRecord | None":
        """The dispatch as its DISPATCHED state carries it (None: a state without its facts,
        as relays before them wrote it, or one that cannot be read)."""
        dispatched = moved.dispatched or {}
        facts = dispatched.get("dispatch")
        if not isinstance(facts, dict):
            return None
        try:
            sent = datetime.fromtimestamp(float(dispatched["timestamp"]), UTC)
            return cls(delivery_id, repo_key, sent, *(facts[name] for name in state.DISPATCH_FACTS))
        except (KeyError, TypeError, ValueError, OverflowError):
            return None


@dataclass(frozen=True)
class OnRecord:
    """What the database holds about a callback, read in one SELECT before deciding."""

    allowlist_token: str | None
    replayed: bool
    dispatch: DispatchOnRecord | None

    SQL = (
        f"SELECT ({lookup.TOKEN_SQL}), "  # noqa: S608 (names from the models)
        f'EXISTS (SELECT 1 FROM {ReplayKey._meta.db_table} WHERE "key" = %s), x.* '
        f"FROM (SELECT 1) one LEFT JOIN ({DispatchOnRecord.SQL}) x ON 1 = 1"
    )

    @classmethod
    def read(cls, identity: Identity, callback: Callback) -> "OnRecord":
        params = [*lookup.TOKEN_PARAMS, replay_key(identity, callback)]
        with sql.prepared_cursor() as cursor:
            cursor.execute(cls.SQL, [*params, callback.delivery_id, identity.repo_key])
            row = cursor.fetchone()
        if row is None:
            raise DatabaseError("the callback's SELECT returned no row")
        token = None if row[0] is None else str(row[0])
        return cls(token, bool(row[1]), DispatchOnRecord.of_row(row[2:]))

    def snapshot(self) -> lookup.Snapshot:
        """The allowlist of the generation read."""
        return lookup.snapshot_at(self.allowlist_token)


def stored_job(identity: Identity, callback: Callback) -> StoredJob | None:
    """What the store holds (committed) of this callback's job, from this relay and of this
    run attempt; None if nothing. A store that cannot answer is Unavailable (503)."""
    try:
        stored = get_store().stored_job(callback.key(identity.repo_key))
    except (DatabaseError, StoreUnavailable) as exc:
        raise Unavailable(Dependency.DATABASE, "the job's record could not be read") from exc
    workflow = callback.workflow
    if (
        stored is None
        or stored.source != JobRecord.Source.RELAY
        or (stored.run_id, stored.run_attempt) != (workflow.run_id, workflow.run_attempt)
    ):
        return None
    return stored


def already_recorded(identity: Identity, callback: Callback) -> bool:
    """Whether the store holds this callback's outcome already: the same job, status and (when
    completed) conclusion, whatever the client's times. An in_progress is held by its job's
    completed record too: a completed is accepted only over an in_progress (one whose answer
    was lost, its process killed after the transition, counts), so the start is in it."""
    stored = stored_job(identity, callback)
    workflow = callback.workflow
    if stored is None:
        return False
    if workflow.status == "in_progress":
        return stored.status in ("in_progress", "completed")
    return stored.status == "completed" and stored.conclusion == (workflow.conclusion or "")
