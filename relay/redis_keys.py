"""Every Redis key the relay uses, in one place: name, type, TTL and who writes it.

Per-dispatch keys carry a hash tag `{<delivery_id>:<repo>}` so that every key of one dispatch
lands in one Redis Cluster slot and a Lua script may touch them together (a delivery id or repo
with a `}` in it, which GitHub never sends, would end the tag early, or empty it so that each
key hashed whole: the tag is then a hash of the two). No other command or script touches more
than one key, save the fan-out's pipeline of SETs, which the cluster client splits by node.

- `crcr:{<delivery>:<repo>}:dispatched` — string, JSON `{"state": "DISPATCHED", "timestamp":
  <epoch seconds>, "dispatch": {"pr_number", "head_sha", "upstream_repo", "event"}}` of the
  latest send (the facts are our dispatch record's, so that an accepted callback need not read
  them; states written before they were added lack them, and such a callback reads the
  database); TTL `CRCR_DISPATCH_TTL` (3 days); written by the fan-out before each POST to
  GitHub, and put back from the database by a callback that finds it gone.
- `crcr:{<delivery>:<repo>}:job:<run_id>:<run_attempt>:<job>` — string, JSON `{"state":
  "IN_PROGRESS" | "COMPLETED", "at": <epoch s>, "tx": <transition id>, ...}`; TTL
  `CRCR_DISPATCH_TTL`; the callback state machine (relay/state.py), one Lua script per
  transition.
- `crcr:rate:<repo>` — counter of callbacks in the current minute; TTL 60 s; the rate limiter.
- `crcr:rate:audit-unverified` — the same, for audit rows of refusals before identity is
  proven (relay-wide; `<repo>` keys always contain a slash, so this name cannot collide).
- `crcr:oidc:jwks:<issuer>` — string, the issuer's JWKS; TTL 24 hours; relay/oidc.py.
- `crcr:oidc:refresh:<issuer>` — "1" while a JWKS refetch is cooling down; TTL 60 s.
- `crcr:gh:installation:<repo>` — string, the App's installation id; TTL 24 hours; GitHub
  client (forgotten on a 404, in case the App was reinstalled).
- `crcr:gh:token:<installation id>` — string, JSON `[token, usable_until]`; TTL until 5 minutes
  before GitHub's expiry; GitHub client.
- `crcr:gh:budget` — hash, installation id (or `app`) → JSON `{"remaining", "limit", "reset",
  "at"}` from GitHub's `X-RateLimit-*` headers; TTL 2 hours, renewed by each write; written
  by the GitHub client at most every 10 s per process and installation (relay/budget.py),
  read by /crcr/ops.
- `crcr:redelivery:<guid>` — string "1"; TTL the wait before that delivery may be asked for
  again (1 minute, doubling with each ask to 1 hour); the lost-webhook job.
- `crcr:redelivery:asks:<guid>` — integer, how often that delivery was asked for; TTL 3 days
  (GitHub's window); the lost-webhook job, for the doubling.

`<repo>` is always the casefolded `owner/name`.
"""

import hashlib


def dispatch_tag(delivery_id: str, repo: str) -> str:
    inner = f"{delivery_id}:{repo}"
    if "}" in inner:
        inner = hashlib.sha256(inner.encode()).hexdigest()
    return "{" + inner + "}"


def dispatched(delivery_id: str, repo: str) -> str:
    return f"crcr:{dispatch_tag(delivery_id, repo)}:dispatched"


def installation(repo: str) -> str:
    return f"crcr:gh:installation:{repo}"


def installation_token(installation_id: int) -> str:
    return f"crcr:gh:token:{installation_id}"


def redelivery(guid: str) -> str:
    return f"crcr:redelivery:{guid}"


def redelivery_asks(guid: str) -> str:
    return f"crcr:redelivery:asks:{guid}"


REDELIVERY_CHECKED = "crcr:redelivery:checked-until"  # when the last complete check started


def job(delivery_id: str, repo: str, run_id: str, run_attempt: int, job_name: str) -> str:
    return f"crcr:{dispatch_tag(delivery_id, repo)}:job:{run_id}:{run_attempt}:{job_name}"


def rate(repo: str) -> str:
    return f"crcr:rate:{repo}"


AUDIT_UNVERIFIED = "crcr:rate:audit-unverified"


def oidc_jwks(issuer: str) -> str:
    return f"crcr:oidc:jwks:{issuer}"


def oidc_refresh(issuer: str) -> str:
    return f"crcr:oidc:refresh:{issuer}"


GITHUB_BUDGET = "crcr:gh:budget"
