"""The way a callback goes through the stages: the fast path, then (if it did not answer) the
full path, with the same outcomes.

- The fast path, the common case of an accepted PR/push callback: decided on the allowlist
  this process read last and the dispatch's facts its DISPATCHED state carries, so nothing is
  read before the transition; written only while that allowlist generation is still the
  committed one (a condition of the same statement). One Redis and one database round trip.
  If the allowlist changed meanwhile, the transition stays and the callback is authorised
  again on a fresh read and written under the newer generation (undoing it and starting over
  could let a job's completed overtake its in_progress). Whatever it does not accept, it
  undoes and leaves to the full path.
- The full path: one SELECT of what the database holds, the policy, the transition (restoring
  what Redis lost) and the write. Every refusal and ignored answer is decided here, on a fresh
  read. The rate limit is charged once either way, and a callback this path refuses or
  ignores before its transition gets back the charge the fast path made.

So exactly one of N identical callbacks wins, and a callback whose record could not be stored
leaves the state as it was: the reporter may send it again (a repeat of one recorded already is
answered 200 `already_recorded`).

Failure mode: Redis unreachable means no transition can be decided: the caller answers 503 with
Retry-After and nothing is recorded (fail closed).
"""

from typing import Any

from allowlist import lookup
from allowlist.entry import Entry
from crcr_site import log_context, sql
from crcr_site.errors import Refused, Unavailable
from relay.callbacks import body, policy
from relay.callbacks.audit import Audit, Decision
from relay.callbacks.moves import Budget, Move
from relay.callbacks.on_record import DispatchOnRecord, OnRecord, already_recorded
from relay.callbacks.write import Accepted, store_self_report, store_transition
from relay.oidc import Identity

# Refusals that a callback repeating one already recorded meets (a reporter retrying after a
# timeout, with the same token or a fresh one): answered as success, nothing written again.
REPEATS = ("duplicate", "replayed")

# How many times an accepted transition is written again under a newer allowlist before it is
# undone and left to the full path (each allowlist change costs every process one).
REWRITES = 3

IGNORED = {"ok": True, "status": "ignored"}


def handle(identity: Identity, raw: bytes, remote_addr: str | None = None) -> dict[str, Any]:
    """Parse, decide and record one callback from a verified caller; returns the answer, or
    raises Refused (Unavailable: nothing was kept). Every decision leaves an audit row."""
    log_context.bind(repo=identity.repo)
    try:
        callback = body.parse(raw)
    except Refused as refused:
        Audit(identity, None, remote_addr).write(
            Decision.REFUSED, refused.status, refused.error, refused.detail
        )
        raise
    log_context.bind(delivery_id=callback.delivery_id, job=callback.job_name)
    audit = Audit(identity, callback, remote_addr)
    try:
        return _decide(identity, callback, audit)
    except Unavailable:
        raise
    except Refused as refused:
        if refused.error in REPEATS and already_recorded(identity, callback):
            audit.write(Decision.IGNORED, 200, "already_recorded", refused.detail)
            return {"ok": True, "status": callback.status, "already_recorded": True}
        audit.write(Decision.REFUSED, refused.status, refused.error, refused.detail)
        raise


def _accepted(callback: body.Callback) -> dict[str, Any]:
    return {"ok": True, "status": callback.status}


def _decide(identity: Identity, callback: body.Callback, audit: Audit) -> dict[str, Any]:
    budget = Budget(identity)
    charged = None
    if callback.path == body.DISPATCH:
        fast = _fast(identity, callback, audit, budget)
        if isinstance(fast, dict):
            return fast
        charged = fast
    try:
        held = OnRecord.read(identity, callback)
        verdict = policy.authorise(identity, callback, held.snapshot().get(identity.repo), held)
        if verdict.refused is not None:
            raise verdict.refused
    except Refused:
        if charged is not None:
            budget.refund()
        raise
    if verdict.level is None:
        if charged is not None:
            budget.refund()
        audit.ignored(verdict.ignored)
        return IGNORED
    audit.provenance = verdict.provenance
    assert verdict.entry is not None  # a verdict with a level has its entry
    accepted = Accepted(identity, callback, verdict.entry, audit)
    if callback.path == body.SELF:
        budget.spend()
        store_self_report(accepted)
        return _accepted(callback)
    assert held.dispatch is not None  # the policy refuses a PR/push callback without one
    return _full(accepted, held.dispatch, budget, charged)


def _full(
    accepted: Accepted, dispatch: DispatchOnRecord, budget: Budget, charged: int | None
) -> dict[str, Any]:
    """The transition and its record, on what the database holds (`charged`: what charging
    the rate limit said when the fast path charged this callback already)."""
    identity, callback = accepted.identity, accepted.callback
    moved = Move.of(identity, callback, dispatch.delivery_id)
    if charged is None:
        first = moved.run(budget.rate)
        budget.enforce(first.retry_after)
    else:
        budget.enforce(charged)
        first = moved.run(None)
    result = moved.settle(first, identity=identity, callback=callback, dispatch=dispatch)
    if not store_transition(accepted, dispatch=dispatch, moved=moved, result=result):
        moved.try_undo()
        raise Refused(409, "replayed", policy.REPLAYED)  # the token authorised another since
    return _accepted(callback)


def _fast(
    identity: Identity, callback: body.Callback, audit: Audit, budget: Budget
) -> dict[str, Any] | int | None:
    """The fast path: its answer, or what charging the rate limit said (None: not charged)
    when it leaves the callback to the full path."""
    seen = lookup.last_read()
    if seen is None:
        return None
    token, snapshot = seen
    verdict = policy.authorise(identity, callback, snapshot.get(identity.repo), None)
    if verdict.level is None or verdict.entry is None:
        return None
    audit.provenance = verdict.provenance
    moved = Move.of(identity, callback, callback.delivery_id)
    result = moved.run(budget.rate)
    if result.result != "ok":
        return result.retry_after
    dispatch = DispatchOnRecord.of_state(callback.delivery_id, identity.repo_key, result)
    if dispatch is None:  # a state without the dispatch's facts: the database's record decides
        moved.undo()
        return 0
    accepted = Accepted(identity, callback, verdict.entry, audit)
    for _ in range(REWRITES):
        condition = sql.Condition(*lookup.is_current_sql(token))
        if store_transition(
            accepted, dispatch=dispatch, moved=moved, result=result, only_if=condition
        ):
            return _accepted(callback)
        try:  # why not: a newer allowlist, or a used token
            newer = _newer_allowlist(identity, callback, token)
        except Exception:
            moved.undo()
            raise
        if newer is None:
            break
        token, accepted = newer[0], Accepted(identity, callback, newer[1], audit)
    moved.undo()
    return 0


def _newer_allowlist(
    identity: Identity, callback: body.Callback, token: str
) -> tuple[str, Entry] | None:
    """After a write under `token` did not happen: the newer generation and the caller's entry
    in it, if its token was not used and the policy still records it there; else None."""
    held = OnRecord.read(identity, callback)
    if held.replayed or held.allowlist_token is None or held.allowlist_token == token:
        return None
    verdict = policy.authorise(identity, callback, held.snapshot().get(identity.repo), held)
    if verdict.entry is None:
        return None
    return held.allowlist_token, verdict.entry
