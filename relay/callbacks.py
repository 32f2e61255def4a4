"""Downstream callbacks (contract §2): identity is verified by relay/oidc.py; this decides.

Order: what the database holds (the allowlist's generation, whether the token was used, the
dispatch on record) → parse and validate → allowlist level (not listed or L1: ignored) →
per-repo rate limit → the state transition and the HUD record, together:

    Redis transition (Lua), charged to the repo's rate limit in the same round trip (over
    it: compensated, 429) → one all-or-nothing write: the replay key, and only if it was
    unused, the HUD row, the outbox row and the audit row (sql.insert_if_new: one statement
    on PostgreSQL). If the write fails or the key was used meanwhile, `state.try_compensate`
    undoes the transition (only while the state still carries this transition's id).

Two ways through, with the same outcomes:

- the common case, an accepted PR/push callback (`_on_last_read`): decided on the allowlist
  this process read last and the dispatch's facts the DISPATCHED state carries, so no read
  before the transition; the write happens only while that allowlist generation is still the
  committed one (a condition of the same statement). Two round trips: Redis, then PostgreSQL.
  If the allowlist changed meanwhile, the transition stays and the callback is decided again
  on a fresh read and written under the newer generation (undoing it and starting over could
  let a job's completed overtake its in_progress).
- everything else, and whatever the first way did not accept (it undoes its transition and
  leaves the decision here): one SELECT of what the database holds, then the checks, the
  transition and the write. Every refusal and ignored answer is decided this way, on a fresh
  read. The rate limit is charged once either way, and a callback this way refuses or ignores
  before its rate limit gets back the charge the first way made.

So exactly one of N identical callbacks wins, and a callback whose record could not be stored
leaves the state as it was: the reporter may send it again. Which upstream PR, SHA and
repository a result belongs to comes from our dispatch record (or the copy of it the fan-out
wrote with the DISPATCHED state), never from the echoed payload.

Failure mode: Redis unreachable means no transition can be decided: the caller answers 503 with
Retry-After and nothing is recorded (fail closed).
"""

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from redis.exceptions import RedisError

from allowlist import lookup
from allowlist.entry import Entry, Level
from crcr_site import sql
from crcr_site.text import stored_text
from hud.models import JobRecord
from hud.records import BadRecord, Workflow, parse_workflow, required_text, text
from hud.storage import (
    HudRecord,
    RecordExists,
    RecordKey,
    StoredJob,
    StoreUnavailable,
    get_store,
    workflow_fields,
)
from relay import dispatch_token, hud_forward, redis_keys, state
from relay.models import CallbackAudit, Delivery, Dispatch, ReplayKey
from relay.oidc import Identity
from relay.oidc import claimed as oidc_claimed

logger = logging.getLogger(__name__)

PATHS = {"pull_request": "dispatch", "push": "dispatch", "nightly": "self", "periodic": "self"}
STATUSES = ("in_progress", "completed")


class Refused(Exception):
    def __init__(self, status: int, error: str, detail: str, retry_after: int | None = None):
        super().__init__(detail)
        self.status, self.error, self.detail, self.retry_after = status, error, detail, retry_after


class Unavailable(Exception):
    """A store failed after the decision: nothing was kept; the client may send it again."""


@dataclass(frozen=True)
class Callback:
    delivery_id: str
    event_type: str
    workflow: Workflow
    job_name: str
    check_run_id: str
    crcr_token: str | None
    body: dict[str, Any]  # verbatim, kept as the untrusted part

    @property
    def echo(self) -> dict[str, Any]:
        payload = self.body.get("payload")
        return payload if isinstance(payload, dict) else {}


def parse(raw: bytes) -> Callback:
    """The callback body, validated; BadRecord (400) names the field."""
    try:  # I-JSON (RFC 7493): UTF-8, no NaN, no lone surrogates, at most 1,024 levels deep
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRecord("body", "is not JSON") from None
    if not isinstance(body, dict):
        raise BadRecord("body", "must be a JSON object")
    delivery_id = required_text(body.get("delivery_id"), "delivery_id", cap=100)
    event_type = text(body.get("event_type"), "event_type", cap=20) or "pull_request"
    if event_type not in PATHS:
        raise BadRecord("event_type", f"must be one of {', '.join(PATHS)}")
    workflow = parse_workflow(body.get("workflow"))
    if workflow.status not in STATUSES:
        raise BadRecord("workflow.status", "must be in_progress or completed")
    job_name, check_run_id = workflow.require_key()
    crcr = body.get("crcr")
    token = crcr.get("token") if isinstance(crcr, dict) else None
    return Callback(
        delivery_id,
        event_type,
        workflow,
        job_name,
        check_run_id,
        token if isinstance(token, str) else None,
        body,
    )


def handle(identity: Identity, raw: bytes, remote_addr: str | None = None) -> dict[str, Any]:
    """Parse, decide and record one callback from a verified caller; returns the answer, or
    raises BadRecord / Refused / Unavailable. Every decision leaves an audit row."""
    try:
        callback = parse(raw)
    except BadRecord as bad:
        Audit(identity, None, remote_addr).write(
            CallbackAudit.Decision.REFUSED, 400, "invalid_body", str(bad)
        )
        raise
    audit = Audit(identity, callback, remote_addr)
    try:
        answer = _decide(identity, callback, audit)
    except Refused as refused:
        if refused.error in REPEATS and _already_recorded(identity, callback):
            audit.write(CallbackAudit.Decision.IGNORED, 200, "already_recorded", refused.detail)
            return {"ok": True, "status": callback.workflow.status, "already_recorded": True}
        audit.write(CallbackAudit.Decision.REFUSED, refused.status, refused.error, refused.detail)
        raise
    return answer


# Refusals that a callback repeating one already recorded meets (a reporter retrying after a
# timeout, with the same token or a fresh one): answered as success, nothing written again.
REPEATS = ("duplicate", "replayed")


def _record_key(identity: Identity, callback: Callback) -> RecordKey:
    workflow = callback.workflow
    return RecordKey(
        identity.repo_key,
        callback.delivery_id,
        workflow.name,
        callback.job_name,
        callback.check_run_id,
    )


def _stored_job(identity: Identity, callback: Callback) -> StoredJob | None:
    """What the store holds (committed) of this callback's job, from this relay and of this
    run attempt; None if nothing. A store that cannot answer is Unavailable (503)."""
    try:
        stored = get_store().stored_job(_record_key(identity, callback))
    except (DatabaseError, StoreUnavailable) as exc:
        raise Unavailable("the job's record could not be read") from exc
    workflow = callback.workflow
    if (
        stored is None
        or stored.source != JobRecord.Source.RELAY
        or (stored.run_id, stored.run_attempt) != (workflow.run_id, workflow.run_attempt)
    ):
        return None
    return stored


def _already_recorded(identity: Identity, callback: Callback) -> bool:
    """Whether the store holds this callback's outcome already: the same job, status and (when
    completed) conclusion, whatever the client's times."""
    stored = _stored_job(identity, callback)
    workflow = callback.workflow
    if stored is None or stored.status != workflow.status:
        return False
    return workflow.status != "completed" or stored.conclusion == (workflow.conclusion or "")


def _restore_job(identity: Identity, callback: Callback, moved: "_Move") -> None:
    """Redis holds no state for this job (it lost its data, or the key expired): put back what
    the database holds of it, the source of truth, before the transition is decided."""
    stored = _stored_job(identity, callback)
    if stored is None:
        return
    state.restore_job(
        moved.job_key,
        completed=stored.status == "completed",
        started=_aware(stored.received_at).timestamp(),
        at=_aware(stored.updated_at).timestamp(),
        timed_out=stored.conclusion == "timed_out",
    )


def _orphaned(identity: Identity, callback: Callback, moved: "_Move") -> bool:
    """Whether the job's state in Redis is a transition whose process died before its record
    was written (killed between the two): older than CRCR_ORPHAN_AFTER, and the database does
    not reflect it. Then it is undone (only while it is still that transition), True: the
    database, the source of truth, decides again. A live transition is written or undone
    within a request's life, so it is never taken for one."""
    current = state.peek(moved.job_key)
    if current is None or current.get("tx") in (None, "restored") or current.get("timed_out"):
        return False
    try:
        age = moved.now - float(current["at"])
    except (KeyError, TypeError, ValueError):
        return False
    if age < settings.CRCR_ORPHAN_AFTER:
        return False
    stored = _stored_job(identity, callback)
    completed = current.get("state") == "COMPLETED"
    if stored is not None and (stored.status == "completed" or not completed):
        return False  # the database holds it
    logger.warning(
        "undoing transition %s on %s: its record was never written", current["tx"], moved.job_key
    )
    return state.compensate(moved.job_key, str(current["tx"]))


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _decide(identity: Identity, callback: Callback, audit: "Audit") -> dict[str, Any]:
    charged = None
    if PATHS[callback.event_type] == "dispatch":
        fast = _on_last_read(identity, callback, audit)
        if isinstance(fast, dict):
            return fast
        charged = fast
    rate = _rate(identity)
    try:
        checked = _checked(identity, callback, audit)
    except Refused:
        _refund(rate, charged)
        raise
    if checked is None:
        _refund(rate, charged)
        return {"ok": True, "status": "ignored"}
    level, dispatch = checked
    if dispatch is None:  # nightly / periodic
        _charge(identity, rate, state.rate_limited(rate))
        return _self_report(identity, callback, level, audit)
    return _transition(identity, callback, level, dispatch, audit, rate, charged)


def _checked(
    identity: Identity, callback: Callback, audit: "Audit"
) -> tuple[Level, "DispatchOnRecord | None"] | None:
    """Everything decided before the rate limit, on what the database holds now: the level
    and the dispatch (None for a self-report), None when the caller is ignored, or Refused."""
    held = OnRecord.read(identity, callback)
    entry = _reporting(identity, callback, lookup.snapshot_at(held.allowlist_token), audit)
    if entry is None or entry.level is None:
        return None
    if PATHS[callback.event_type] == "self":
        return entry.level, None
    if held.dispatch is None:
        raise Refused(
            409,
            "no_dispatch",
            f"no dispatch of {callback.delivery_id} to {identity.repo} on record",
        )
    if held.replayed:  # the early answer; the write in _store is what guarantees it
        raise Refused(409, "replayed", REPLAYED)
    audit.provenance = _provenance(callback, identity)
    return entry.level, held.dispatch


def _reporting_level(entry: Entry | None) -> Level | None:
    """The level of an allowlist entry whose callbacks are recorded (L2 and up), else None."""
    if entry is None or entry.level is None or entry.level == Level.L1:
        return None
    return entry.level


def _reporting(
    identity: Identity, callback: Callback, snapshot: lookup.Snapshot, audit: "Audit"
) -> Entry | None:
    """The caller's allowlist entry if it reports (L2 and up) and its token's claims agree
    with it and with the body; None when it is ignored (audited); else Refused."""
    entry = snapshot.get(identity.repo)
    if entry is None or _reporting_level(entry) is None:
        level = entry.level if entry else None
        # Any repository on GitHub can mint a valid token: these rows share the strangers' cap.
        if _audit_allowed():
            audit.write(
                CallbackAudit.Decision.IGNORED,
                200,
                "not_reporting",
                f"{identity.repo} is {'at L1' if level else 'not allowlisted'}",
            )
        return None
    _check_run_claims(identity, callback.workflow)
    _check_repository_ids(identity, entry)
    return entry


# How many times an accepted transition is written again under a newer allowlist before it is
# undone and left to the full path (each allowlist change costs every process one).
_REWRITES = 3


def _on_last_read(
    identity: Identity, callback: Callback, audit: "Audit"
) -> dict[str, Any] | int | None:
    """The common case, an accepted PR/push callback, in one Redis and one database round
    trip instead of three: decided on the allowlist this process read last, with the dispatch's
    facts from its DISPATCHED state, and written only while that allowlist is still the
    committed one (the write's condition). When it is not, the transition stays and the
    callback is decided again on a fresh read and written under the newer allowlist.

    Any other outcome (a refusal or an ignored caller, a used token, a state without the
    dispatch's facts) is undone and left to `_decide`'s full path, which reads the database
    first. Returns the answer, or what charging the rate limit said (None: not charged)."""
    seen = lookup.last_read()
    if seen is None:
        return None
    token, snapshot = seen
    entry = snapshot.get(identity.repo)
    level = _reporting_level(entry)
    if entry is None or level is None:
        return None
    try:
        _check_run_claims(identity, callback.workflow)
        _check_repository_ids(identity, entry)
        audit.provenance = _provenance(callback, identity)
    except Refused:
        return None
    moved = _Move.of(identity, callback, callback.delivery_id)
    result = moved.run(_rate(identity))
    if result.result != "ok":
        return result.retry_after
    try:
        dispatch = DispatchOnRecord.of_state(callback.delivery_id, identity.repo_key, result)
    except (KeyError, TypeError, ValueError, OverflowError):
        dispatch = None  # an unreadable state: the database's record decides
    if dispatch is None:
        _undo(moved)
        return 0
    for _ in range(_REWRITES):
        condition = sql.Condition(*lookup.is_current_sql(token))
        if _store(identity, callback, level, dispatch, audit, moved, result, condition):
            return {"ok": True, "status": callback.workflow.status}
        try:  # why not: a newer allowlist, or a used token
            newer = _newer_allowlist(identity, callback, token)
        except Exception:
            _undo(moved)
            raise
        if newer is None:
            break
        token, level = newer
    _undo(moved)
    return 0


def _newer_allowlist(
    identity: Identity, callback: Callback, token: str
) -> tuple[str, Level] | None:
    """After a write under `token` did not happen: the newer generation and the caller's level
    in it, if its token was not used and it still reports there; else None."""
    held = OnRecord.read(identity, callback)
    if held.replayed or held.allowlist_token is None or held.allowlist_token == token:
        return None
    entry = lookup.snapshot_at(held.allowlist_token).get(identity.repo)
    level = _reporting_level(entry)
    if entry is None or level is None:
        return None
    try:
        _check_repository_ids(identity, entry)
    except Refused:
        return None
    return held.allowlist_token, level


def _undo(moved: "_Move") -> None:
    """Undo the fast path's transition before the full path decides; left in place, it would
    make that answer "duplicate", so a failure is Unavailable (nothing was kept)."""
    if not state.try_compensate(moved.job_key, moved.tx):
        raise Unavailable("the transition could not be undone")


def _refund(rate: state.RateLimit, charged: int | None) -> None:
    """Give back the charge of a callback the full path refuses or ignores before its rate
    limit (as if it had never been charged); a refund Redis cannot take is only logged."""
    if charged is None:
        return
    try:
        state.refund(rate)
    except RedisError as exc:
        logger.warning("rate limit charge on %s not refunded: %s", rate.key, exc)


def _rate(identity: Identity) -> state.RateLimit:
    return state.RateLimit(redis_keys.rate(identity.repo_key), settings.CRCR_RATE_LIMIT_PER_MIN)


def _charge(identity: Identity, rate: state.RateLimit, wait: int) -> None:
    """Refuse a caller over its per-repo rate limit (`wait`: seconds until its window resets)."""
    if wait:
        raise Refused(
            429,
            "rate_limited",
            f"more than {rate.limit} callbacks a minute from {identity.repo}",
            retry_after=wait,
        )


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
        as relays before them wrote it)."""
        dispatched = moved.dispatched or {}
        facts = dispatched.get("dispatch")
        if not isinstance(facts, dict):
            return None
        sent = datetime.fromtimestamp(float(dispatched["timestamp"]), UTC)
        return cls(delivery_id, repo_key, sent, *(facts[name] for name in state.DISPATCH_FACTS))


@dataclass(frozen=True)
class OnRecord:
    """What the database holds about a callback, read in one SELECT before deciding (every
    callback runs it, so it is one round trip of plain SQL): the allowlist's generation token,
    whether the caller's token was used already, and the dispatch the callback answers."""

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
        params = [*lookup.TOKEN_PARAMS, _replay_key(identity)]
        with sql.prepared_cursor() as cursor:
            cursor.execute(cls.SQL, [*params, callback.delivery_id, identity.repo_key])
            row = cursor.fetchone()
        if row is None:
            raise DatabaseError("the callback's SELECT returned no row")
        token = None if row[0] is None else str(row[0])
        return cls(token, bool(row[1]), DispatchOnRecord.of_row(row[2:]))


def _check_run_claims(identity: Identity, workflow: Workflow) -> None:
    """A GitHub token is bound to one run: its run_id / run_attempt must be the body's."""
    for claim, value in (("run_id", workflow.run_id), ("run_attempt", str(workflow.run_attempt))):
        claimed = identity.claims.get(claim)
        if identity.kind == "github" and claimed is not None and str(claimed) != value:
            raise Refused(
                403, "claims_mismatch", f"the token's {claim} is {claimed}, the body says {value}"
            )


def _check_repository_ids(identity: Identity, entry: Entry) -> None:
    """Where the allowlist knows GitHub's ids for the repo, the token must carry the same."""
    for known, claim in (
        (entry.repository_id, "repository_id"),
        (entry.owner_id, "repository_owner_id"),
    ):
        if identity.kind == "github" and known and str(identity.claims.get(claim)) != known:
            raise Refused(
                403,
                "identity_mismatch",
                f"the token's {claim} is not the one on record for {identity.repo}",
            )


def _provenance(callback: Callback, identity: Identity) -> str:
    if callback.crcr_token is None:
        if settings.CRCR_REQUIRE_DISPATCH_TOKEN:
            raise Refused(403, "dispatch_token_required", "crcr.token is required")
        return "absent"
    try:
        claims = dispatch_token.verify(callback.crcr_token)
    except dispatch_token.BadToken as exc:
        raise Refused(403, "bad_dispatch_token", str(exc)) from None
    if (claims.delivery_id, claims.repo) != (callback.delivery_id, identity.repo_key):
        raise Refused(403, "bad_dispatch_token", "crcr.token belongs to another dispatch")
    return "verified"


REPLAYED = "this token has already authorised a callback"


def _replay_key(identity: Identity) -> str:
    return identity.replay_key[:200]


def _replay_row(identity: Identity, now: datetime) -> sql.Row:
    return sql.Row(ReplayKey, {"key": _replay_key(identity), "used_at": now}, ("key",))


def _use_replay_key(identity: Identity, now: datetime) -> None:
    """The first statement of a self-report's transaction: if the token was used, nothing
    else has happened yet, and raising leaves the transaction, which rolls it back."""
    try:
        sql.insert_row(sql.Row(ReplayKey, {"key": _replay_key(identity), "used_at": now}))
    except IntegrityError:
        raise Refused(409, "replayed", REPLAYED) from None


@dataclass(frozen=True)
class _Move:
    """One callback's transition: its keys, its id and its clock."""

    dispatched_key: str
    job_key: str
    tx: str
    now: float
    status: str

    @classmethod
    def of(cls, identity: Identity, callback: Callback, delivery_id: str) -> "_Move":
        workflow = callback.workflow
        key = identity.repo_key
        return cls(
            redis_keys.dispatched(delivery_id, key),
            redis_keys.job(
                delivery_id, key, workflow.run_id, workflow.run_attempt, callback.job_name
            ),
            uuid.uuid4().hex,
            time.time(),
            workflow.status,
        )

    def run(self, rate: state.RateLimit | None, *, consulted: bool = False) -> state.Transition:
        move = state.start if self.status == "in_progress" else state.complete
        return move(
            self.dispatched_key,
            self.job_key,
            now=self.now,
            tx=self.tx,
            rate=rate,
            consulted=consulted,
        )


def _transition(
    identity: Identity,
    callback: Callback,
    level: Level,
    dispatch: "DispatchOnRecord",
    audit: "Audit",
    rate: state.RateLimit,
    charged: int | None,
) -> dict[str, Any]:
    """The transition and its record, on what the database holds (`charged`: the rate limit's
    answer when this callback was charged already)."""
    moved = _Move.of(identity, callback, dispatch.delivery_id)
    if charged is None:
        result = moved.run(rate)
        _charge(identity, rate, result.retry_after)
    else:
        _charge(identity, rate, charged)
        result = moved.run(None)
    if result.result == "no_dispatch":  # Redis lost it: the database knows (charged already)
        sent = dispatch.sent.timestamp()
        state.restore_dispatched(moved.dispatched_key, sent, state.facts_of(dispatch))
        result = moved.run(None)
    if result.result in ("not_started", "unknown"):  # nor the job's state, perhaps
        _restore_job(identity, callback, moved)
        result = moved.run(None, consulted=True)
    if result.result == "duplicate" and _orphaned(identity, callback, moved):
        result = moved.run(None, consulted=True)
    if result.result != "ok":
        raise Refused(409, result.result, _REFUSALS[result.result])
    if not _store(identity, callback, level, dispatch, audit, moved, result):
        state.try_compensate(moved.job_key, moved.tx)
        raise Refused(409, "replayed", REPLAYED)  # the token authorised another callback since
    return {"ok": True, "status": callback.workflow.status}


def _store(
    identity: Identity,
    callback: Callback,
    level: Level,
    dispatch: "DispatchOnRecord",
    audit: "Audit",
    moved: _Move,
    result: state.Transition,
    only_if: sql.Condition | None = None,
) -> bool:
    """The record of an accepted transition, all or nothing with the replay key: False when
    the token was used, or `only_if` did not hold (the transition stays: the caller decides);
    a failure undoes the transition and is Unavailable."""
    try:
        elapsed = max(0.0, round(moved.now - (result.since or moved.now), 3))
        record = _record(
            identity,
            callback,
            level,
            dispatch.pr_number,
            dispatch.head_sha,
            dispatch.upstream_repo,
            dispatch.event,
        )
        if moved.status == "in_progress":
            record.queue_time = elapsed
        else:
            record.execution_time = elapsed
        at = timezone.now()
        outbox_rows = hud_forward.outbox_rows(_envelope(identity, level, callback, record))
        audit_row = audit.row(CallbackAudit.Decision.ACCEPTED, 200, "accepted")
        fresh = get_store().upsert_guarded(
            record,
            now=at,
            guard=_replay_row(identity, at),
            alongside=[*outbox_rows, audit_row],
            only_if=only_if,
        )
    except Exception as exc:
        state.try_compensate(moved.job_key, moved.tx)
        if isinstance(exc, DatabaseError):
            raise Unavailable("the record could not be stored; nothing was kept") from exc
        raise
    return fresh


_REFUSALS = {
    "duplicate": "this job has already reported that status",
    "unknown": "the job's state could not be restored",
    "not_started": "completed before in_progress",
    "no_dispatch": "no dispatch on record",
}


def _self_report(
    identity: Identity, callback: Callback, level: Level, audit: "Audit"
) -> dict[str, Any]:
    """nightly / periodic: one completed per key, written once, no state machine."""
    if callback.workflow.status != "completed":
        raise Refused(400, "invalid_status", "nightly/periodic callbacks are completed only")
    echo = callback.echo
    upstream = _echo_text(echo, "repository", "full_name") or settings.CRCR_UPSTREAM_REPO
    head = _echo_text(echo, "head_sha") or callback.delivery_id
    record = _record(identity, callback, level, 0, head[:100], upstream[:140], callback.event_type)
    try:
        with transaction.atomic():
            _use_replay_key(identity, timezone.now())
            get_store().insert_new(record, now=timezone.now())
            hud_forward.queue(_envelope(identity, level, callback, record))
            audit.write(CallbackAudit.Decision.ACCEPTED, 200, "accepted")
    except RecordExists:
        raise Refused(409, "duplicate", "this result has already been reported") from None
    except DatabaseError as exc:
        raise Unavailable("the record could not be stored; nothing was kept") from exc
    return {"ok": True, "status": "completed"}


def _envelope(
    identity: Identity, level: Level, callback: Callback, record: HudRecord
) -> dict[str, Any]:
    """Contract section 3's record: what we verified, and the callback verbatim."""
    return {
        "trusted": {
            "verified_repo": identity.repo,
            "downstream_repo_level": level.value,
            "ci_metrics": {
                "queue_time": record.queue_time,
                "execution_time": record.execution_time,
            },
        },
        "untrusted": {"callback_payload": callback.body},
    }


def _echo_text(echo: dict[str, Any], *path: str) -> str | None:
    value: Any = echo
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None


def _record(
    identity: Identity,
    callback: Callback,
    level: Level,
    pr_number: int,
    head_sha: str,
    upstream_repo: str,
    event_type: str,
) -> HudRecord:
    workflow = callback.workflow
    return HudRecord(
        key=_record_key(identity, callback),
        repo_display=identity.repo,
        upstream_repo=upstream_repo,
        event_type=event_type,
        level=level.value,
        pr_number=pr_number,
        head_sha=head_sha,
        **workflow_fields(workflow),
    )


def _audit_allowed() -> bool:
    """Whether an audit row from outside the allowlist fits CRCR_AUDIT_UNVERIFIED_PER_MIN this
    minute (relay-wide); not while Redis is down (those are only logged)."""
    limit = settings.CRCR_AUDIT_UNVERIFIED_PER_MIN
    try:
        return bool(limit) and not state.rate_limited(
            state.RateLimit(redis_keys.AUDIT_UNVERIFIED, limit)
        )
    except RedisError:
        return False


def refused_unverified(
    status: int, error: str, detail: str, *, authorization: str, remote_addr: str | None
) -> None:
    """The audit row of a callback refused before its caller's identity was proven.

    Anyone can send those, so they are kept at most CRCR_AUDIT_UNVERIFIED_PER_MIN a minute
    across the relay; beyond that, or while Redis is down, they are only logged (fail open: the
    answer is the refusal either way, and the database cannot be filled by strangers)."""
    issuer, repo = oidc_claimed(authorization)
    logger.info("callback refused (%s %s) from %s: %s", status, error, remote_addr, detail)
    if not _audit_allowed():
        return
    try:
        sql.insert_row(
            sql.Row(
                CallbackAudit,
                dict(
                    at=datetime.now(UTC),
                    decision=CallbackAudit.Decision.REFUSED,
                    status=status,
                    reason=error,
                    detail=stored_text(detail[:2000]),
                    verified=False,
                    repo=stored_text(repo[:140]),
                    issuer=stored_text(issuer[:200]),
                    remote_addr=remote_addr,
                ),
            )
        )
    except DatabaseError:
        logger.warning("callback refusal not audited: the database is unavailable")


class Audit:
    """The forensic row of one callback decision by a verified caller (the callback is None
    when its body could not be parsed)."""

    def __init__(
        self, identity: Identity, callback: Callback | None, remote_addr: str | None = None
    ) -> None:
        self.identity, self.callback, self.remote_addr = identity, callback, remote_addr
        self.provenance = ""

    def write(self, decision: str, status: int, reason: str, detail: str = "") -> None:
        sql.insert_row(self.row(decision, status, reason, detail))

    def row(self, decision: str, status: int, reason: str, detail: str = "") -> sql.Row:
        values: dict[str, Any] = dict(
            at=datetime.now(UTC),
            decision=decision,
            status=status,
            reason=reason,
            detail=stored_text(detail[:2000]),
            repo=stored_text(self.identity.repo[:140]),
            issuer=stored_text(self.identity.issuer[:200]),
            remote_addr=self.remote_addr,
            replay_key=stored_text(_replay_key(self.identity)),
            provenance=self.provenance,
        )
        if self.callback is not None:
            workflow = self.callback.workflow
            values |= dict(
                delivery_id=self.callback.delivery_id,
                event_type=self.callback.event_type,
                callback_status=workflow.status,
                job=f"{workflow.name} / {self.callback.job_name} "
                f"({workflow.run_id}, {workflow.run_attempt})"[:600],
                dropped=workflow.dropped,
            )
        return sql.Row(CallbackAudit, values)
