"""Stage 6: the forensic row of every callback decision (CallbackAudit).

An accepted callback's row is part of its write (relay/callbacks/write.py); a refused or ignored
one is written on its own. Rows about callers outside the allowlist, or whose identity was never
proven, are capped relay-wide (CRCR_AUDIT_UNVERIFIED_PER_MIN): anyone can send those.
"""

import logging
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from crcr_site import sql
from crcr_site.redis_connection import REDIS_ERRORS
from crcr_site.text import stored_text
from relay import redis_keys, state
from relay.callbacks.body import Callback
from relay.callbacks.on_record import replay_key
from relay.models import CallbackAudit
from relay.oidc import Identity
from relay.oidc import claimed as oidc_claimed

logger = logging.getLogger(__name__)

Decision = CallbackAudit.Decision


class Audit:
    """The forensic row of one callback decision by a verified caller (the callback is None
    when its body could not be parsed); `provenance` is the policy's word on its dispatch
    token."""

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
            replay_key=stored_text(replay_key(self.identity, self.callback)),
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

    def ignored(self, detail: str) -> None:
        """A verified caller whose callbacks are not recorded (outside the allowlist, or at
        L1): any repository on GitHub can mint a valid token, so these share the cap."""
        if unverified_allowed():
            self.write(Decision.IGNORED, 200, "not_reporting", detail)


def unverified_allowed() -> bool:
    """Whether an audit row from outside the allowlist fits CRCR_AUDIT_UNVERIFIED_PER_MIN this
    minute (relay-wide); not while Redis is down (those are only logged)."""
    limit = settings.CRCR_AUDIT_UNVERIFIED_PER_MIN
    try:
        return bool(limit) and not state.rate_limited(
            state.RateLimit(redis_keys.AUDIT_UNVERIFIED, limit)
        )
    except REDIS_ERRORS:
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
    if not unverified_allowed():
        return
    try:
        sql.insert_row(
            sql.Row(
                CallbackAudit,
                dict(
                    at=datetime.now(UTC),
                    decision=Decision.REFUSED,
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
