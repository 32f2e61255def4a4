"""The doctor's checks, in the order a downstream's integration works: allowlisted, the App
installed and allowed to dispatch, a workflow that takes the dispatch and may mint an OIDC
token (or a Buildkite pipeline the relay knows), then what actually happened: the last
dispatch, the last callback, the refusals. Each is a function of the `Facts`."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from django.conf import settings
from django.utils import timezone
from django.utils.timesince import timesince

from allowlist.entry import Event, Level, repo_key
from allowlist.models import DownstreamRepo
from relay.doctor import on_github, on_record
from relay.doctor.findings import Check, State
from relay.doctor.workflow import DISPATCH_TYPES, Workflow
from relay.models import CallbackAudit, Dispatch

SAID = 300  # characters of what a refusal or GitHub said, shown at most
NIGHTLY_ONLY = "not needed: it takes part in nightly runs only (no dispatches)"
TYPES = ", ".join(DISPATCH_TYPES)


@dataclass(frozen=True)
class Facts:
    repo: str  # as asked
    row: DownstreamRepo | None  # its allowlist entry, enabled or not
    github: on_github.Found

    @cached_property
    def pipelines(self) -> on_record.Pipelines:
        return on_record.pipelines(self.repo)

    @property
    def dispatched(self) -> bool:
        """Whether the relay sends it dispatches (or would, once allowlisted)."""
        return self.row is None or Event.PULL_REQUEST in self.row.events

    @property
    def listening(self) -> list[Workflow]:
        return [w for w in self.github.workflows or () if w.listens]

    @property
    def buildkite(self) -> bool:
        """It reports from Buildkite: a pipeline reports as it, or its workflow starts one."""
        return bool(self.pipelines.ids) or any(w.triggers_buildkite for w in self.listening)

    @property
    def spellings(self) -> set[str]:
        """The names its callbacks may carry: the audit keeps each token's spelling."""
        names = {self.repo, repo_key(self.repo), *self.pipelines.spellings}
        if self.row is not None:
            names.add(self.row.repo)
        if self.github.repository is not None:
            names.add(self.github.repository.full_name)
        return names

    @property
    def branch(self) -> str:
        repository = self.github.repository
        return repository.default_branch if repository else "its default branch"


def short(text: str) -> str:
    return text if len(text) <= SAID else text[: SAID - 1].rstrip() + "…"


def when(at: datetime | None) -> str:
    if at is None:
        return "at an unknown time"
    return f"at {at:%Y-%m-%d %H:%M} UTC ({timesince(at, timezone.now(), depth=1)} ago)"


def not_checked(facts: Facts, name: str) -> Check:
    """A check that needed what GitHub could not say (its own line says why)."""
    return Check(name, State.WARN, "not checked: GitHub could not be asked (the GitHub App line)",
                 "fix the GitHub App line first")  # fmt: skip


def allowlist(facts: Facts) -> Check:
    name, row = "allowlist", facts.row
    if row is None:
        return Check(
            name,
            State.FAIL,
            f"{facts.repo} is not in the allowlist",
            "add it to the upstream's .github/allowlist.yml (L2 puts its results on "
            "the HUD) and sync it (manage.py allowlist_sync), or add it in the admin",
        )
    level = Level(row.level)
    events = ", ".join(Event(e).label for e in row.events)
    at = f"at {level.label}" + (f" (label ciflow/crcr/{row.device})" if row.device else "")
    if not row.enabled:
        return Check(
            name,
            State.FAIL,
            f"listed {at}, but its entry is disabled",
            "tick enabled on its entry in the admin",
        )
    if level == Level.L1:
        return Check(
            name,
            State.WARN,
            f"{at}, for {events}: it is dispatched to, but its "
            "callbacks are ignored and nothing of it reaches the HUD",
            "promote it to L2 once it reports (the file, or the admin's Promote)",
        )
    if row.suspended:
        return Check(
            name,
            State.WARN,
            f"{at}, for {events}, but temporarily demoted "
            f"{when(row.suspended_since)}: {row.suspended_reason}",
            "lift the demotion in the admin once it is fixed",
        )
    return Check(name, State.PASS, f"{at}, for {events}")


def app_installed(facts: Facts) -> Check:
    name, found = "GitHub App", facts.github
    if found.installation is not None:
        i = found.installation
        selection = f", {i.repository_selection} repositories" if i.repository_selection else ""
        return Check(name, State.PASS, f"installed (installation {i.id} on {i.account}{selection})")
    problem = found.problem
    if problem is None:
        return not_checked(facts, name)
    if problem.not_installed and not facts.dispatched:
        return Check(name, State.PASS, f"not installed, and {NIGHTLY_ONLY}")
    return Check(name, State.FAIL, problem.finding, problem.next_step)


def contents_write(facts: Facts) -> Check:
    name, installation = "Contents: write", facts.github.installation
    if not facts.dispatched:
        return Check(name, State.PASS, NIGHTLY_ONLY)
    if installation is None:
        return not_checked(facts, name)
    granted = installation.permissions.get("contents", "")
    if granted == "write":
        return Check(
            name, State.PASS, "the installation may write Contents, which repository_dispatch needs"
        )
    return Check(
        name,
        State.FAIL,
        f"the installation's Contents permission is "
        f"{granted or 'none'}: GitHub refuses its dispatches (403)",
        "set the App's Contents permission to Read and write, and have "
        f"{installation.account} accept the new permissions",
    )


def dispatch_workflow(facts: Facts) -> Check:
    name, workflows, problem = "workflow", facts.github.workflows, facts.github.problem
    if not facts.dispatched:
        return Check(name, State.PASS, NIGHTLY_ONLY)
    if workflows is None and problem is not None and problem.asking == "contents":
        return Check(name, State.FAIL, problem.finding, problem.next_step)
    if workflows is None:
        return not_checked(facts, name)
    unreadable = tuple(f"{w.path}: {w.error}" for w in workflows if w.error)
    add = (
        f"add `on: repository_dispatch: types: [{TYPES}]` to the workflow that runs its CI, "
        f"on {facts.branch} (GitHub takes repository_dispatch workflows from the default "
        "branch only)"
    )
    listening = facts.listening
    if not listening:
        what = (
            f"none of its {len(workflows)} workflows on {facts.branch} runs on repository_dispatch"
            if workflows
            else f"no workflow files on {facts.branch}"
        )
        return Check(name, State.FAIL, what, add, unreadable)
    whole = [w for w in listening if not w.missing_types]
    if whole:
        types = ", ".join(sorted(whole[0].types)) if whole[0].types else "every type"
        paths = ", ".join(w.path for w in whole)
        return Check(
            name, State.PASS, f"{paths} runs on repository_dispatch ({types})", details=unreadable
        )
    partial = [w for w in listening if len(w.missing_types) < len(DISPATCH_TYPES)]
    if partial:
        w = partial[0]
        missing = ", ".join(w.missing_types)
        return Check(
            name,
            State.WARN,
            f"{w.path} takes only some of the relay's dispatches: "
            f"{missing} dispatches start nothing",
            f"add {missing} to its repository_dispatch types",
            unreadable,
        )
    w = listening[0]
    return Check(
        name,
        State.FAIL,
        f"{w.path} runs on repository_dispatch of types "
        f"{', '.join(sorted(w.types or ()))}, none of the relay's ({TYPES})",
        f"set its repository_dispatch types to [{TYPES}]",
        unreadable,
    )


def id_token(facts: Facts) -> Check:
    name, workflows = "id-token: write", facts.github.workflows
    if facts.buildkite:
        return Check(
            name,
            State.PASS,
            "not needed: it reports from Buildkite, with its pipeline's own OIDC token",
        )
    if workflows is None:
        return not_checked(facts, name)
    candidates = facts.listening if facts.dispatched else list(workflows)
    if not candidates:
        return Check(
            name,
            State.WARN,
            "not checked: no workflow takes the dispatches (the line above)",
            "fix the line above first",
        )
    granting = [w.path for w in candidates if w.id_token]
    if granting:
        return Check(
            name, State.PASS, f"{', '.join(granting)} may mint the OIDC token its callbacks need"
        )
    return Check(
        name,
        State.FAIL,
        f"{', '.join(w.path for w in candidates)} does not grant "
        "`id-token: write`: its callbacks get no OIDC token, and the relay answers "
        "401 to callbacks without one",
        "add `permissions: {id-token: write, contents: read}` to the workflow, or "
        "to the job that calls back",
    )


def buildkite_pipeline(facts: Facts) -> Check:
    name, pipelines = "Buildkite pipeline", facts.pipelines
    if pipelines.error:
        return Check(name, State.FAIL, pipelines.error, "fix the file CRCR_CI_PROVIDERS names")
    if pipelines.ids:
        return Check(name, State.PASS, f"CRCR_CI_PROVIDERS maps {', '.join(pipelines.ids)} to it")
    starting = [w.path for w in facts.listening if w.triggers_buildkite]
    if not starting:
        starts = ", and its workflow starts none" if facts.github.workflows is not None else ""
        return Check(name, State.PASS, f"not used: no Buildkite pipeline reports as it{starts}")
    knocking = tuple(
        f"{when(row.at)}: {short(row.detail)}" for row in on_record.unregistered_pipelines()
    )
    return Check(
        name,
        State.FAIL,
        f"{starting[0]} starts a Buildkite build, but no pipeline "
        "in CRCR_CI_PROVIDERS reports as it: its callbacks are refused (403 "
        "pipeline_not_registered)",
        "add `<organization_id>/<pipeline_id>: " + facts.repo + "` under "
        "providers.buildkite.repo_map in CRCR_CI_PROVIDERS (the ids are the "
        "pipeline's OIDC claims; unregistered pipelines' refusals are listed below)",
        knocking,
    )


def _described(dispatch: Dispatch) -> str:
    d = dispatch.delivery
    what = f"delivery {d.delivery_id}, {d.event}" + (f".{d.action}" if d.action else "")
    if d.pr_number:
        what += f", PR #{d.pr_number}"
    if d.head_sha:
        what += f" at {d.head_sha[:12]}"
    redispatch = getattr(d, "redispatch", None)  # (none: the reverse one-to-one is missing)
    return what + (f", a re-dispatch by {redispatch.by}" if redispatch else "")


def last_dispatch(facts: Facts) -> Check:
    name = "last dispatch"
    dispatch = on_record.last_dispatch(facts.repo)
    if dispatch is None:
        if not facts.dispatched:
            return Check(name, State.PASS, f"none: {NIGHTLY_ONLY}")
        return Check(
            name,
            State.WARN,
            "none yet",
            "it gets the next upstream PR; to send one now: manage.py redispatch "
            f"--pr N --repo {facts.repo}",
        )
    what, d = _described(dispatch), dispatch.delivery
    again = (
        f"manage.py redispatch --pr {d.pr_number} --repo {dispatch.repo}"
        if d.pr_number
        else "the admin's Retry now on the dispatch"
    )
    status = Dispatch.Status
    said: dict[str, tuple[State, str, str]] = {
        status.SENT: (State.PASS, f"sent {when(dispatch.sent_at)} ({what})", ""),
        status.PENDING: (
            State.WARN,
            f"waiting to be sent since {when(dispatch.waiting_since)},"
            f" {dispatch.attempts} attempt(s) so far: {short(dispatch.last_error)} ({what})",
            "the worker sends it (see /crcr/ops); nothing to do unless it stays",
        ),
        status.FAILED: (
            State.FAIL,
            f"failed {when(dispatch.updated_at)} after "
            f"{dispatch.attempts} attempt(s): {short(dispatch.last_error)} ({what})",
            f"fix what GitHub said (the lines above), then send it again: {again}",
        ),
        status.SHADOW: (
            State.WARN,
            f"recorded, not sent: shadow mode ({what})",
            "CRCR_DISPATCH_ENABLED=false: nothing is sent until it is true",
        ),
    }
    state, finding, next_step = said[dispatch.status]
    return Check(name, state, finding, next_step)


# What to do about a refusal, by its code (relay/callbacks/, relay/oidc.py); {audience} and
# {limit} are the settings' values.
ADVICE: dict[str, str] = {
    "token_missing": "send the OIDC token as `Authorization: Bearer` (the workflow needs "
    "id-token: write)",
    "token_invalid": "mint the token with audience {audience} from a trusted issuer, and send "
    "it unchanged",
    "no_dispatch": "echo the dispatch's client_payload (its delivery_id) unchanged; only repos "
    "dispatched to may report on a delivery",
    "invalid_body": "send the callback body the kit's reporter sends (docs/contract.md)",
    "pipeline_not_registered": "map the pipeline in CRCR_CI_PROVIDERS (the Buildkite line)",
    "claim_not_allowed": "report only from the branches its provider map entry allows",
    "rate_limited": "send fewer callbacks (CRCR_RATE_LIMIT_PER_MIN: {limit} a minute), and "
    "retry after Retry-After",
    "duplicate": "report each job's in_progress and completed once per run attempt",
    "not_started": "report in_progress before completed",
    "bad_dispatch_token": "echo the client_payload's crcr.token unchanged",
    "dispatch_token_required": "echo the client_payload's crcr.token unchanged",
}


def _advice(reason: str) -> str:
    return ADVICE.get(reason, "see the refusals below").format(
        audience=settings.CRCR_OIDC_AUDIENCE, limit=settings.CRCR_RATE_LIMIT_PER_MIN
    )


def last_callback(facts: Facts) -> Check:
    name = "last callback"
    row = on_record.last_callback(facts.spellings)
    if row is None:
        return _silence(facts, name)
    done = f"{row.callback_status} {row.job}".strip()
    delivery = f" (delivery {row.delivery_id})" if row.delivery_id else ""
    if row.decision == CallbackAudit.Decision.ACCEPTED:
        return Check(name, State.PASS, f"accepted {when(row.at)}: {done}{delivery}")
    if row.decision == CallbackAudit.Decision.IGNORED:
        return Check(
            name,
            State.WARN,
            f"ignored {when(row.at)}: {short(row.detail)}",
            "the relay records no callbacks of a repo outside the allowlist or at "
            "L1 (the allowlist line)",
        )
    return Check(
        name,
        State.FAIL,
        f"refused {when(row.at)}: {row.status} {row.reason}, {short(row.detail)}{delivery}",
        _advice(row.reason),
    )


def _silence(facts: Facts, name: str) -> Check:
    dispatch = on_record.last_dispatch(facts.repo)
    if dispatch is None or dispatch.sent_at is None:
        return Check(
            name,
            State.WARN,
            "none yet (nor a dispatch sent to answer)",
            "see the last dispatch line",
        )
    look = (
        "look on the repo's Actions tab for a repository_dispatch run of delivery "
        f"{dispatch.delivery.delivery_id}: none means the workflow did not take it; one "
        "means its callback step never reached the relay"
    )
    silent = timezone.now() - dispatch.sent_at > timedelta(seconds=settings.CRCR_SILENT_AFTER)
    state = State.FAIL if silent else State.WARN
    return Check(name, state, f"none since the dispatch {when(dispatch.sent_at)}", look)


def refusals(facts: Facts) -> Check:
    name = "refusals"
    rows = on_record.refusals(facts.spellings)
    if not rows:
        return Check(name, State.PASS, "none in the callback audit")
    lines = tuple(
        f"{when(row.at)}: {row.status} {row.reason}, {short(row.detail)}"
        + (f" [{row.job}]" if row.job else "")
        for row in rows
    )
    return Check(
        name,
        State.WARN,
        f"{len(rows)} refusal(s) of its callbacks in the audit"
        + (", the newest shown" if len(rows) == on_record.REFUSALS_SHOWN else ""),
        "each says why it was refused (the last callback line, for the newest)",
        lines,
    )


ALL: tuple[Callable[[Facts], Check], ...] = (
    allowlist,
    app_installed,
    contents_write,
    dispatch_workflow,
    id_token,
    buildkite_pipeline,
    last_dispatch,
    last_callback,
    refusals,
)
