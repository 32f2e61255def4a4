"""The one sticky comment on an upstream PR: which downstream repos are red on its head.

- **Queued in the callback's statement.** A completed callback of a PR job at a commenting
  level (CRCR_COMMENT_LEVELS) adds `rows_for`'s upsert to its one write: the PR's
  `PullComment` row has its `version` bumped and is due, with no round trip of its own.
- **Rendered at send time.** The worker (`send_due`) writes the comment from what is recorded
  then: the PR's head (its newest pull_request delivery), the HUD's results for it, the
  labels and the allowlist. Updates that piled up are sent once, as the newest state; a send
  is marked done only if `version` did not move meanwhile (else the newer state goes next).
- **One comment, edited in place.** Created the first time a repo is red on the head (a PR
  that was never red gets none), then PATCHed, and not at all when its text would not change.
  Its id is kept; without one (or when GitHub says it was deleted: 404) the PR's comments are
  searched for MARKER at the start of a bot's comment, and only if none is there is one
  created.
- **New, or already failing on main.** A failing job whose latest result on the upstream's
  default branch is red too (hud/baseline.py, as the HUD's pages tell it) is listed apart,
  with the main SHA since which it has been failing there. The default branch is the one the
  PR's newest webhook names (`repository.default_branch`), else "main".
- **Oncalls once.** A repo's oncalls (allowlist) are @-mentioned in the first body that shows
  it red on this PR and only named, in code, afterwards; a suspended repo is listed but not
  mentioned.

Which repos count: an L4 repo always, an L3 repo when the PR carries its device's label, each
only while its level is one of CRCR_COMMENT_LEVELS. GitHub's failures are retried under the
lease rules (relay/leases.py); a rejection (403, 422) leaves the row failed until the PR's
next update.
"""

import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import quote

from django.conf import settings
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from allowlist import lookup
from allowlist.entry import Entry, Level, repo_key
from crcr_site import sql
from hud import baseline
from hud.records import safe_url
from hud.reports import Cell
from hud.storage import StoreUnavailable, get_store
from relay.callbacks.body import Callback
from relay.callbacks.on_record import DispatchOnRecord
from relay.github import GitHubApp, GitHubError, NotFound, RateLimited, get_app
from relay.models import Delivery, PullComment
from relay.upstream_pr import labels

logger = logging.getLogger(__name__)

MARKER = "<!-- crcr:pr-comment -->"
BATCH = 20
JOBS_SHOWN = 10  # failing jobs listed per repo; the HUD has the rest
MAX_BODY = 60000  # characters; GitHub refuses a comment over 65,536
HANDLE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:/[A-Za-z0-9._-]{1,100})?")


# --- queueing, in the callback's write ---------------------------------------------------


class Accepted(Protocol):
    """What rows_for reads of relay.callbacks.write.Accepted (which imports this module)."""

    @property
    def callback(self) -> Callback: ...

    @property
    def entry(self) -> Entry: ...


def rows_for(accepted: Accepted, dispatch: DispatchOnRecord) -> list[sql.Row]:
    """The PR comment's upsert for a callback's one write: only a completed job of a PR
    dispatch at a commenting level whose check runs do not bring it up to date already (the
    check-run worker queues the comment for the L3 and L4 jobs it sends, off the callback's
    path: one row every job of a PR wrote would make them wait on each other's locks)."""
    entry = accepted.entry
    if (
        accepted.callback.status != "completed"
        or dispatch.event != "pull_request"
        or dispatch.pr_number <= 0
        or entry.level.value not in settings.CRCR_COMMENT_LEVELS
        or (entry.level in (Level.L3, Level.L4) and not entry.suspended)
    ):
        return []
    return [_due_row(dispatch.upstream_repo, dispatch.pr_number, timezone.now())]


def queue(upstream_repo: str, pr_number: int) -> None:
    """Make a PR's comment due outside a callback (a label added, a job timed out)."""
    if settings.CRCR_COMMENT_LEVELS and pr_number > 0:
        sql.insert_row(_due_row(upstream_repo, pr_number, timezone.now()))


def _due_row(upstream_repo: str, pr_number: int, now: datetime) -> sql.Row:
    values = {
        "upstream_repo": repo_key(upstream_repo),
        "pr_number": pr_number,
        "version": 1,
        "next_attempt_at": now,
        "pending_since": now,
        "created_at": now,
    }
    return sql.Row(
        PullComment,
        values,
        on_conflict=("upstream_repo", "pr_number"),
        update=("version", "status", "next_attempt_at", "pending_since", "attempts"),
        clause=_bumped,
    )


@functools.cache
def _bumped(update: tuple[str, ...]) -> str:
    """The upsert's DO UPDATE: a newer version, due. A row already waiting keeps its turn (a
    backoff GitHub asked for stands); one sent or given up waits afresh from now."""
    name = connections["default"].ops.quote_name
    table = name(PullComment._meta.db_table)

    def stored(column: str) -> str:
        return f"{table}.{name(column)}"

    waiting = f"{stored('status')} = 'pending'"
    kept = {
        column: f"CASE WHEN {waiting} THEN {stored(column)} ELSE EXCLUDED.{name(column)} END"
        for column in ("next_attempt_at", "pending_since")
    }
    assignments = {
        "version": f"{stored('version')} + 1",
        "status": "'pending'",
        "attempts": f"CASE WHEN {waiting} THEN {stored('attempts')} ELSE 0 END",
        **kept,
    }
    return "SET " + ", ".join(f"{name(column)} = {assignments[column]}" for column in update)


# --- what the comment says -----------------------------------------------------------------


@dataclass(frozen=True)
class Failing:
    """A failed or timed-out job on the head, and since when main fails it too (if it does)."""

    cell: Cell
    main_since: str | None


@dataclass(frozen=True)
class RedRepo:
    entry: Entry
    failing: tuple[Failing, ...]
    mention: bool  # its oncalls are @-mentioned in this body


@dataclass(frozen=True)
class PrState:
    """What is recorded for a PR's head, as the comment shows it."""

    pr_number: int
    head_sha: str
    main_branch: str
    red: tuple[RedRepo, ...]
    reported: bool  # a counted repo has results on the head
    running: int  # jobs in progress on the head

    @property
    def mentioned(self) -> set[str]:
        return {repo.entry.key for repo in self.red if repo.mention}


def state_of(row: PullComment, *, now: datetime) -> PrState | None:
    """The PR's state from the relay's and the HUD's records (None: no head on record)."""
    head = _head(row.upstream_repo, row.pr_number)
    if head is None:
        return None
    head_sha, branch = head
    counted = _counted(row.upstream_repo, row.pr_number)
    store = get_store()
    red: list[tuple[Entry, tuple[Cell, ...]]] = []
    reported, running = False, 0
    for result in store.pr(row.pr_number).repos:
        entry = counted.get(result.key)
        if entry is None or result.latest.head_sha != head_sha:
            continue
        reported = True
        running += result.latest.counts.in_progress
        if result.latest.red:
            red.append((entry, result.failing))
    main_shas = baseline.main_shas(row.upstream_repo, now=now, branch=branch)
    already = set(row.mentioned)
    repos = []
    for entry, cells in sorted(red, key=lambda r: (-r[0].level.rank, r[0].key)):
        jobs = {cell.job_name for cell in cells}
        since = baseline.failing_on_main(store, entry.key, jobs, main_shas, now=now)
        mention = entry.key not in already and not entry.suspended and bool(_handles(entry.oncalls))
        failing = tuple(Failing(cell, since.get(cell.job_name)) for cell in cells)
        repos.append(RedRepo(entry, failing, mention))
    return PrState(row.pr_number, head_sha, branch, tuple(repos), reported, running)


def _head(upstream_repo: str, pr_number: int) -> tuple[str, str] | None:
    """The PR's head SHA and the upstream's default branch, from its newest webhook."""
    newest = (
        Delivery.objects.filter(
            event="pull_request", pr_number=pr_number, upstream_repo__iexact=upstream_repo
        )
        .order_by("-received_at", "-pk")
        .only("head_sha", "body")
        .first()
    )
    if newest is None or not newest.head_sha:
        return None
    try:
        repository = json.loads(newest.body).get("repository") or {}
        branch = repository.get("default_branch")
    except (ValueError, AttributeError):
        branch = None
    return newest.head_sha, branch if isinstance(branch, str) and branch else "main"


def _counted(upstream_repo: str, pr_number: int) -> dict[str, Entry]:
    """The repos the comment is about: at a commenting level, and L3 only when labelled."""
    levels = set(settings.CRCR_COMMENT_LEVELS)
    devices = labels.labelled(upstream_repo, pr_number)
    return {
        entry.key: entry
        for entry in lookup.snapshot().entries
        if entry.level.value in levels
        and (entry.level != Level.L3 or entry.device.casefold() in devices)
    }


# --- the text ------------------------------------------------------------------------------


def body_of(state: PrState, *, public_url: str) -> str:
    """The comment's markdown. Downstream text (job and test names, URLs) is untrusted: names
    go in code spans (no markup, no mentions), and only plain http(s) URLs become links."""
    head = _code(state.head_sha[:10])
    pr_page = public_url + reverse("crcr-pr", kwargs={"number": state.pr_number})
    footer = f"\n[All downstream results of #{state.pr_number} on the HUD]({_href(pr_page)})\n"
    if not state.red:
        if state.running or not state.reported:
            running = f" ({state.running} jobs running)" if state.running else ""
            title = f":hourglass: No downstream failures on {head} so far{running}."
        else:
            title = f":white_check_mark: Downstream CI: all downstream checks pass on {head}."
        return f"{MARKER}\n### {title}\n{footer}"
    count = len(state.red)
    title = f":x: Downstream CI: {count} repo{'s' if count > 1 else ''} failing on {head}"
    parts = [f"{MARKER}\n### {title}\n"]
    for n, repo in enumerate(state.red):
        section = _section(repo, state, public_url)
        if sum(map(len, parts)) + len(section) + len(footer) > MAX_BODY - 200:
            parts.append(f"\n…and {count - n} more on the HUD.\n")
            break
        parts.append(section)
    return "".join(parts) + footer


def _section(repo: RedRepo, state: PrState, public_url: str) -> str:
    entry = repo.entry
    org, _, name = entry.repo.partition("/")
    page = public_url + reverse("crcr-repo", kwargs={"org": org, "name": name})
    lines = [f"\n**[{_code(entry.repo)}]({_href(page)}?pr={state.pr_number})** · {entry.level}"]
    handles = _handles(entry.oncalls)
    if repo.mention:
        lines[0] += " · cc " + " ".join(f"@{handle}" for handle in handles)
    elif handles:
        lines[0] += " · oncall " + " ".join(_code(f"@{handle}") for handle in handles)
    new = [f for f in repo.failing if f.main_since is None]
    old = [f for f in repo.failing if f.main_since is not None]
    for heading, failing in (("New failures", new), (f"Also failing on {state.main_branch}", old)):
        if not failing:
            continue
        lines.append(f"\n{_text(heading)}:")  # a paragraph of its own, then its list
        lines += [_job_line(f, state.main_branch) for f in failing[:JOBS_SHOWN]]
        if len(failing) > JOBS_SHOWN:
            lines.append(f"- …and {len(failing) - JOBS_SHOWN} more")
    return "\n".join(lines) + "\n"


def _job_line(failing: Failing, main_branch: str) -> str:
    cell = failing.cell
    line = f"- {_code(f'{cell.workflow_name} / {cell.job_name}')} {_code(cell.conclusion)}"
    if safe_url(cell.log_url):
        line += f" · [run]({_href(cell.log_url)})"
    if cell.failed_tests:
        line += " · failing: " + ", ".join(_code(test) for test in cell.failed_tests)
    if failing.main_since:
        line += f" · also failing on {_text(main_branch)} since {_code(failing.main_since[:10])}"
    return line


def _handles(oncalls: Iterable[str]) -> list[str]:
    """GitHub logins (or org/team) among the oncalls; anything else is never mentioned."""
    return [h for h in (o.strip().lstrip("@") for o in oncalls) if HANDLE.fullmatch(h)]


def _code(value: str) -> str:
    """Untrusted text as a code span: one line, no backticks, capped."""
    flat = " ".join(str(value).replace("`", "'").split())[:200]
    return f"`{flat}`" if flat else "`?`"


def _text(value: str) -> str:
    """Plain text we chose (a branch name from GitHub) with markdown's specials escaped."""
    return re.sub(r"([\\`*_{}\[\]<>()#+!|@~])", r"\\\1", " ".join(value.split())[:100])


def _href(url: str) -> str:
    """A link target that cannot end the link early: what could is percent-encoded."""
    return quote(url, safe=":/?#[]@!$&'*+,;=%-._~")


# --- sending -------------------------------------------------------------------------------


def send_due() -> int:
    """Send the PR comments that are due; how many were created or edited on GitHub."""
    lease = float(settings.CRCR_DISPATCH_LEASE)
    deadline = time.monotonic() + lease
    owner = uuid.uuid4().hex
    rows = PullComment.objects.claim_due(owner=owner, n=BATCH, lease=timedelta(seconds=lease))
    written = 0
    for n, row in enumerate(rows):
        # A send is a few GitHub calls at most: stop while the lease has room for them.
        if deadline - time.monotonic() < 3 * float(settings.GITHUB_TIMEOUT):
            PullComment.objects.filter(pk__in=[r.pk for r in rows[n:]]).hand_back(owner=owner)
            break
        written += _send(row)
    return written


def _send(row: PullComment) -> int:
    now = timezone.now()
    try:
        state = state_of(row, now=now)
    except StoreUnavailable as exc:
        row.retry_later(f"HUD store: {exc}", now=now)
        return 0
    if state is None or (not state.red and row.comment_id is None):
        _done(row)  # never red: nothing to say
        return 0
    body = body_of(state, public_url=settings.CRCR_PUBLIC_URL)
    if row.comment_id is not None and body == row.body:
        _done(row)
        return 0
    try:
        comment_id = _write(get_app(), row, body)
    except GitHubError as exc:
        wait = exc.retry_after if isinstance(exc, RateLimited) else 0.0
        if exc.transient:
            row.retry_later(str(exc), now=timezone.now(), retry_after=wait)
        else:
            row.fail(str(exc))
        logger.warning("comment on %s#%s: %s", row.upstream_repo, row.pr_number, exc)
        return 0
    mentioned = sorted(set(row.mentioned) | state.mentioned)
    PullComment.objects.filter(pk=row.pk).update(
        comment_id=comment_id, body=body, mentioned=mentioned
    )
    _done(row)
    return 1


def _write(app: GitHubApp, row: PullComment, body: str) -> int:
    """Edit the PR's comment, or create it when there is none; its id."""
    repo, number = row.upstream_repo, row.pr_number
    if row.comment_id is not None:
        try:
            app.update_issue_comment(repo, row.comment_id, body)
            return row.comment_id
        except NotFound:
            logger.info("the comment on %s#%s was deleted: writing it again", repo, number)
    found = _find(app, repo, number)
    if found is not None:
        app.update_issue_comment(repo, found, body)
        return found
    return app.create_issue_comment(repo, number, body)


def _find(app: GitHubApp, repo: str, number: int) -> int | None:
    """Our comment on the PR, by its marker (a create whose answer was lost made it)."""
    for comment in app.issue_comments(repo, number):
        if comment.user_type == "Bot" and comment.body.startswith(MARKER):
            return comment.id
    return None


def _done(row: PullComment) -> None:
    """Sent, unless the PR was updated while it was being sent: then due again at once."""
    now = timezone.now()
    if PullComment.objects.filter(pk=row.pk, version=row.version).mark_sent(now=now, attempts=0):
        return
    PullComment.objects.filter(pk=row.pk, lease_owner=row.lease_owner).update(
        lease_owner="", lease_until=None, next_attempt_at=now, attempts=0
    )
