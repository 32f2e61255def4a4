"""Downstream callbacks (contract §2): a verified caller's CI result, decided and recorded.

The caller's identity is proven before anything here (relay/oidc.py). Then a callback meets
these stages, one module each, in this order:

1. `body`: the raw body parsed once into a typed `Callback` (400 `invalid_body` names the field).
2. `on_record`: what the database holds, the source of truth: the allowlist's generation,
   whether the caller's token was used, the dispatch the callback answers, the job's record.
3. `policy`: every check of the caller against the allowlist, its token's claims and the
   dispatch, as one table; `authorise` returns a verdict (recorded at a level, ignored, or
   refused) and writes nothing.
4. `moves`: the job's transition in Redis, charged to the per-repo rate limit in the same
   round trip, and its recovery when Redis lost what the database holds.
5. `write`: the all-or-nothing write of an accepted callback.
6. `audit`: the forensic row of every decision.

`flow` takes a callback through them, by a fast path (one Redis and one database round trip
for an accepted callback) or the full path; its docstring says when each is taken.
"""

from relay.callbacks.audit import refused_unverified
from relay.callbacks.flow import handle

__all__ = ["handle", "refused_unverified"]
