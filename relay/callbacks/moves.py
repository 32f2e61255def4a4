"""Stage 4: the job's transition in Redis (relay/state.py's Lua), charged to the caller's
per-repo rate limit in the same round trip, and its recovery where Redis and the database
disagree: Redis lost the dispatch's or the job's state (restored from the database, the source
of truth), or a process died between its transition and its write (the orphan is undone).
"""

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings

from crcr_site.errors import Dependency, Refused, Unavailable
from crcr_site.redis_connection import REDIS_ERRORS
from relay import redis_keys, state
from relay.callbacks.body import Callback
from relay.callbacks.on_record import DispatchOnRecord, stored_job
from relay.oidc import Identity

logger = logging.getLogger(__name__)

REFUSALS = {
    "duplicate": "this job has already reported that status",
    "unknown": "the job's state could not be restored",
    "not_started": "completed before in_progress",
    "no_dispatch": "no dispatch on record",
}


@dataclass(frozen=True)
class Move:
    """One callback's transition: its keys, its id and its clock."""

    dispatched_key: str
    job_key: str
    tx: str
    now: float
    status: str

    @classmethod
    def of(cls, identity: Identity, callback: Callback, delivery_id: str) -> "Move":
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

    def try_undo(self) -> bool:
        """Undo this transition if the state still carries it (see state.try_compensate)."""
        return state.try_compensate(self.job_key, self.tx)

    def undo(self) -> None:
        """Undo this transition so the full path can decide afresh; left in place, it would
        make that answer "duplicate", so a failure is Unavailable (nothing was kept)."""
        if not self.try_undo():
            raise Unavailable(Dependency.REDIS, "the transition could not be undone")

    def settle(
        self,
        first: state.Transition,
        *,
        identity: Identity,
        callback: Callback,
        dispatch: DispatchOnRecord,
    ) -> state.Transition:
        """The transition, after `first`, once what Redis lost is restored from the database
        (already charged to the rate limit); Refused (409) when it does not hold."""
        result = first
        if result.result == "no_dispatch":  # Redis lost the DISPATCHED state: the database knows
            sent = dispatch.sent.timestamp()
            state.restore_dispatched(self.dispatched_key, sent, state.facts_of(dispatch))
            result = self.run(None)
        if result.result in ("not_started", "unknown"):  # nor the job's state, perhaps
            self._restore_job(identity, callback)
            result = self.run(None, consulted=True)
        if result.result == "duplicate" and self._orphaned(identity, callback):
            result = self.run(None, consulted=True)
        if result.result != "ok":
            raise Refused(409, result.result, REFUSALS[result.result])
        return result

    def _restore_job(self, identity: Identity, callback: Callback) -> None:
        """Redis holds no state for this job (it lost its data, or the key expired): put back
        what the database holds of it before the transition is decided."""
        stored = stored_job(identity, callback)
        if stored is None:
            return
        state.restore_job(
            self.job_key,
            completed=stored.status == "completed",
            started=_aware(stored.received_at).timestamp(),
            at=_aware(stored.updated_at).timestamp(),
            timed_out=stored.conclusion == "timed_out",
        )

    def _orphaned(self, identity: Identity, callback: Callback) -> bool:
        """Whether the job's state in Redis is a transition whose process died before its
        record was written (killed between the two): older than CRCR_ORPHAN_AFTER, and the
        database does not reflect it. Then it is undone (only while it is still that
        transition), True: the database decides again. A live transition is written or undone
        within a request's life, so it is never taken for one."""
        current = state.peek(self.job_key)
        if current is None or current.get("tx") in (None, "restored") or current.get("timed_out"):
            return False
        try:
            age = self.now - float(current["at"])
        except (KeyError, TypeError, ValueError):
            return False
        if age < settings.CRCR_ORPHAN_AFTER:
            return False
        stored = stored_job(identity, callback)
        completed = current.get("state") == "COMPLETED"
        if stored is not None and (stored.status == "completed" or not completed):
            return False  # the database holds it
        logger.warning(
            "undoing transition %s on %s: its record was never written", current["tx"], self.job_key
        )
        return state.compensate(self.job_key, str(current["tx"]))


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Budget:
    """A caller's per-repo rate limit (CRCR_RATE_LIMIT_PER_MIN), charged with its transition
    in the same round trip (`Move.run(budget.rate)`)."""

    identity: Identity

    @property
    def rate(self) -> state.RateLimit:
        return state.RateLimit(
            redis_keys.rate(self.identity.repo_key), settings.CRCR_RATE_LIMIT_PER_MIN
        )

    def enforce(self, wait: int) -> None:
        """Refuse a caller over its limit (`wait`: what charging it said, seconds until its
        window resets; 0 within it)."""
        if wait:
            raise Refused(
                429,
                "rate_limited",
                f"more than {self.rate.limit} callbacks a minute from {self.identity.repo}",
                retry_after=wait,
            )

    def spend(self) -> None:
        """Charge a callback that has no transition (a self-report); refused over the limit."""
        self.enforce(state.rate_limited(self.rate))

    def refund(self) -> None:
        """Give back a charge (as if the callback had never been charged); a refund Redis
        cannot take is only logged."""
        try:
            state.refund(self.rate)
        except REDIS_ERRORS as exc:
            logger.warning("rate limit charge on %s not refunded: %s", self.rate.key, exc)
