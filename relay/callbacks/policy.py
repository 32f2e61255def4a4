"""Stage 3: whether a verified caller's callback is recorded, and at which level.

Every check is written once, in `CHECKS`, in the order a callback meets them, and every path
asks them once through `authorise`, which returns a `Verdict` and writes nothing. The caller
is first looked up in the allowlist: not listed or at L1, its callbacks are ignored (answered
200, not recorded). Then, each a refusal:

- `run_claims`, 403 `claims_mismatch`: a GitHub token is bound to one run; its `run_id` and
  `run_attempt` are the body's.
- `repository_ids`, 403 `identity_mismatch`: where the allowlist knows GitHub's ids for the
  repo, the token carries the same (a deleted and re-created repo of that name does not).
- `dispatch_on_record`, 409 `no_dispatch`: a PR/push result answers a dispatch of ours to
  this repo.
- `token_unused`, 409 `replayed`: an OIDC token authorises one callback (the early answer;
  the write's replay key is what guarantees it).
- `dispatch_token`, 403 `dispatch_token_required` / `bad_dispatch_token`: the `crcr.token` we
  signed into the dispatch, when present (or required), is this delivery's and this repo's;
  it says the record's provenance.

The two checks of what the database holds (`dispatch_on_record`, `token_unused`) need its
read; the fast path decides before reading, and there the transition (no DISPATCHED state:
`no_dispatch`) and the write's replay key (`replayed`) stand in for them. Claims deliberately
not checked here: whatever oidc.py does not check (`sub`, `ref`), and the body's echoed upstream
payload, which never decides where a result belongs (our dispatch record does).
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from allowlist.entry import Entry, Level
from crcr_site.errors import Refused
from relay import dispatch_token
from relay.callbacks.body import DISPATCH, Callback
from relay.callbacks.on_record import OnRecord
from relay.oidc import Identity

REPLAYED = "this token has already authorised a callback"


@dataclass(frozen=True)
class Verdict:
    """What the policy says: recorded at `level` (with the record's provenance), ignored
    (`ignored` says why), or refused."""

    level: Level | None = None
    provenance: str = ""
    ignored: str = ""
    refused: Refused | None = None
    entry: Entry | None = None  # the allowlist entry it was recorded under


def reporting_level(entry: Entry | None) -> Level | None:
    """The level of an allowlist entry whose callbacks are recorded (L2 and up), else None."""
    if entry is None or entry.level is None or entry.level == Level.L1:
        return None
    return entry.level


@dataclass(frozen=True)
class Case:
    """What the checks look at: the verified caller, its callback, its allowlist entry and,
    where it was read, what the database holds."""

    identity: Identity
    callback: Callback
    entry: Entry
    held: OnRecord | None

    @property
    def github(self) -> bool:
        return self.identity.kind == "github"


def _run_claims(case: Case) -> None:
    workflow = case.callback.workflow
    for claim, value in (("run_id", workflow.run_id), ("run_attempt", str(workflow.run_attempt))):
        claimed = case.identity.claims.get(claim)
        if case.github and claimed is not None and str(claimed) != value:
            raise Refused(
                403, "claims_mismatch", f"the token's {claim} is {claimed}, the body says {value}"
            )


def _repository_ids(case: Case) -> None:
    for known, claim in (
        (case.entry.repository_id, "repository_id"),
        (case.entry.owner_id, "repository_owner_id"),
    ):
        if case.github and known and str(case.identity.claims.get(claim)) != known:
            raise Refused(
                403,
                "identity_mismatch",
                f"the token's {claim} is not the one on record for {case.identity.repo}",
            )


def _dispatch_on_record(case: Case) -> None:
    if case.held is not None and case.held.dispatch is None:
        raise Refused(
            409,
            "no_dispatch",
            f"no dispatch of {case.callback.delivery_id} to {case.identity.repo} on record",
        )


def _token_unused(case: Case) -> None:
    if case.held is not None and case.held.replayed:
        raise Refused(409, "replayed", REPLAYED)


def _dispatch_token(case: Case) -> str:
    callback = case.callback
    if callback.crcr_token is None:
        if settings.CRCR_REQUIRE_DISPATCH_TOKEN:
            raise Refused(403, "dispatch_token_required", "crcr.token is required")
        return "absent"
    try:
        claims = dispatch_token.verify(callback.crcr_token)
    except dispatch_token.BadToken as exc:
        raise Refused(403, "bad_dispatch_token", str(exc)) from None
    if (claims.delivery_id, claims.repo) != (callback.delivery_id, case.identity.repo_key):
        raise Refused(403, "bad_dispatch_token", "crcr.token belongs to another dispatch")
    return "verified"


# (check, whether it applies to self-reports too). A check raises Refused; the last one's
# answer is the record's provenance.
CHECKS: tuple[tuple[Callable[[Case], object], bool], ...] = (
    (_run_claims, True),
    (_repository_ids, True),
    (_dispatch_on_record, False),
    (_token_unused, False),
    (_dispatch_token, False),
)


def authorise(
    identity: Identity, callback: Callback, entry: Entry | None, held: OnRecord | None
) -> Verdict:
    """The verdict on a callback from `identity`, whose allowlist entry is `entry`, with what
    the database holds (`held`; None where it was not read)."""
    level = reporting_level(entry)
    if entry is None or level is None:
        listed = "at L1" if entry is not None else "not allowlisted"
        return Verdict(ignored=f"{identity.repo} is {listed}")
    case = Case(identity, callback, entry, held)
    dispatched = callback.path == DISPATCH
    provenance = ""
    try:
        for check, for_self_reports in CHECKS:
            if dispatched or for_self_reports:
                provenance = str(check(case) or "")
    except Refused as refused:
        return Verdict(refused=refused)
    return Verdict(level=level, provenance=provenance, entry=entry)
