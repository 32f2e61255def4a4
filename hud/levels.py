"""Level automation: proposals from the readiness criteria, and what accepting one does.

`evaluate` measures every enabled L2+ repo taking part in PR events (the probe left out) with
the numbers its HUD readiness panel shows (hud/pages.py `readiness`) and keeps one open
proposal per repo and direction: promote (L2→L3, L3→L4) when every criterion is met over the
promotion window, demote (L3→L2, L4→L3) when a demotion criterion fails over the demotion
window (a criterion with no data in its window is not met); no promotion while a demotion
criterion fails.
An open proposal the next evaluation no longer makes lapses; a dismissed one is not made
again until its window holds only results from after the dismissal.

With CRCR_LEVELS_AUTO_DEMOTE a new demotion stands a temporary demotion of its repo
(allowlist/levels.py `suspend`), once per proposal; it ends when the proposal is accepted (the
level is then lower), dismissed or lapses, or when an admin lifts it. Promotions are never
applied automatically.

Accepting sets the level in the allowlist over the file's (override), in the change log under
the admin's name, and keeps the export's unified diff for the upstream PR.
"""

import logging
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from allowlist import levels, lookup
from allowlist.audit import acting_as
from allowlist.entry import Entry, Level
from allowlist.models import DownstreamRepo
from hud.models import LevelProposal
from hud.pages import (
    Criterion,
    Readiness,
    Verdict,
    automation_skips,
    figure,
    readiness,
    readiness_windows,
)
from hud.storage import RecordStore, get_store

logger = logging.getLogger(__name__)

Direction = LevelProposal.Direction
State = LevelProposal.State
# Who the change log and the proposals name for what an evaluation does.
ACTOR = "levels"


class ProposalRefused(ValueError):
    """Nothing was changed; the message says why, for people."""


@dataclass(frozen=True)
class Decision:
    """What one repo's figures propose."""

    direction: str
    to_level: Level
    figures: list[dict[str, Any]]
    reason: str


def _finite(value: float | None) -> float | None:
    # A backend may hold non-finite measures (see hud/reports.py); JSON cannot.
    return value if value is not None and math.isfinite(value) else None


def shown(value: float | None, unit: str) -> str:
    """A criterion's figure as the HUD reads it (the readiness panel's own words)."""
    return figure(value, unit)


def _figure(criterion: Criterion, *, promotion: bool, days: int) -> dict[str, Any]:
    value = criterion.promotion if promotion else criterion.demotion
    return {
        "name": criterion.name,
        "needs": criterion.threshold,
        "value": _finite(value),
        "unit": criterion.unit,
        "met": criterion.promotion_met if promotion else criterion.demotion_met,
        "days": None if criterion.unit == "days" else days,
    }


def _said(found: dict[str, Any]) -> str:
    over = f" over {found['days']} days" if found["days"] else ""
    value = figure(found["value"], found["unit"])
    return f"{found['name']} {value} (needs {found['needs']}){over}"


def decide(level: Level, ready: Readiness) -> Decision | None:
    """The proposal a repo's readiness makes at `level`, if any: what its verdict
    (hud/pages.py `judge`, the readiness panel's) says."""
    lower, higher = level.step(-1), level.step(+1)
    if ready.verdict == Verdict.AT_RISK and lower is not None:
        demoting = [c for c in ready.criteria if c.demotes]
        figures = [_figure(c, promotion=False, days=ready.demotion_days) for c in demoting]
        reason = "; ".join(_said(f) for f in figures if not f["met"])
        return Decision(Direction.DEMOTE, lower, figures, reason)
    if ready.verdict == Verdict.READY and higher is not None:
        figures = [_figure(c, promotion=True, days=ready.promotion_days) for c in ready.criteria]
        reason = "every criterion met: " + "; ".join(_said(f) for f in figures)
        return Decision(Direction.PROMOTE, higher, figures, reason)
    return None


@dataclass
class Report:
    """What one evaluation did, by repo."""

    opened: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    lapsed: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # dismissed lately: not proposed again yet
    suspended: list[str] = field(default_factory=list)
    lifted: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{name}: {', '.join(repos)}" for name, repos in vars(self).items() if repos]
        return "; ".join(parts) or "nothing to propose"


def _evaluated(entry: Entry) -> bool:
    return not automation_skips(entry, entry.key)


def evaluate(*, now: datetime | None = None, store: RecordStore | None = None) -> Report:
    """Measure every evaluated repo, then bring its proposals up to date (see the module); a
    store that cannot answer fails it before anything has changed."""
    now = now or timezone.now()
    store = store or get_store()
    measured: list[tuple[Entry, Decision | None]] = []
    for entry in lookup.snapshot().entries:
        if _evaluated(entry):
            promote, demote = store.readiness_over(entry.key, readiness_windows(now))
            ready = readiness(entry.repo, promote, demote, now, entry.level)
            measured.append((entry, decide(entry.level, ready)))
    report = Report()
    for entry, decision in measured:
        _apply(entry, decision, now, report)
    with levels.writing():
        evaluated = [entry.key for entry, _ in measured]
        gone = LevelProposal.objects.filter(state=State.OPEN).exclude(repo_key__in=evaluated)
        for proposal in gone:
            _lapse(proposal, now, report)
    logger.info("levels evaluated: %s", report)
    return report


def _apply(measured: Entry, decision: Decision | None, now: datetime, report: Report) -> None:
    """Keep `measured`'s proposals as `decision` says, under the allowlist writers' lock."""
    with levels.writing():
        entry = lookup.snapshot().get(measured.repo)
        if entry is None or entry.level != measured.level:
            return  # changed while it was measured: the next evaluation sees it as it is now
        kept: LevelProposal | None = None
        for proposal in LevelProposal.objects.filter(repo_key=entry.key, state=State.OPEN):
            wanted = decision is not None and proposal.direction == decision.direction
            if wanted and proposal.from_level == entry.level:
                kept = proposal
            else:
                _lapse(proposal, now, report)
        if decision is not None:
            _propose(entry, decision, kept, now, report)


def _propose(
    entry: Entry, decision: Decision, kept: LevelProposal | None, now: datetime, report: Report
) -> None:
    """Open the proposal, or bring the open one's figures up to date."""
    if kept is None and _dismissed_lately(entry, decision, now):
        report.held.append(entry.repo)
        return
    if kept is None:
        kept = LevelProposal(
            repo=entry.repo,
            repo_key=entry.key,
            direction=decision.direction,
            from_level=entry.level,
            to_level=decision.to_level,
            opened_at=now,
        )
        report.opened.append(entry.repo)
    else:
        report.kept.append(entry.repo)
    kept.figures, kept.reason, kept.evaluated_at = decision.figures, decision.reason, now
    kept.blocker = _blocker(entry, decision.to_level)
    demotes = decision.direction == Direction.DEMOTE
    if demotes and settings.CRCR_LEVELS_AUTO_DEMOTE and kept.suspended_at is None:
        _suspend(kept, now, report)
    kept.save()


def _blocker(entry: Entry, level: Level) -> str:
    row = DownstreamRepo.objects.filter(repo__iexact=entry.repo).first()
    return row.cannot_be(level) if row is not None else ""


def _dismissed_lately(entry: Entry, decision: Decision, now: datetime) -> bool:
    days = (
        settings.HUD_READY_PROMOTION_DAYS
        if decision.direction == Direction.PROMOTE
        else settings.HUD_READY_DEMOTION_DAYS
    )
    return LevelProposal.objects.filter(
        repo_key=entry.key,
        direction=decision.direction,
        from_level=entry.level,
        state=State.DISMISSED,
        closed_at__gt=now - timedelta(days=days),
    ).exists()


def _suspend(proposal: LevelProposal, now: datetime, report: Report) -> None:
    reason = (
        f"temporary demotion {proposal.from_level}→{proposal.to_level} "
        f"({now:%Y-%m-%d}): {proposal.reason}"
    )
    with acting_as(ACTOR):
        if levels.suspend(proposal.repo, reason):
            report.suspended.append(proposal.repo)
    # Once per proposal, whether it stood now or one stood already: an admin who lifts it
    # is not overruled by the next evaluation.
    proposal.suspended_at = now


def _close(proposal: LevelProposal, state: str, now: datetime, actor: str) -> bool:
    """Close `proposal`; True when that lifted the temporary demotion it stood."""
    proposal.state, proposal.closed_at, proposal.closed_by = state, now, actor
    proposal.save()
    if proposal.suspended_at is None or state == State.ACCEPTED:
        return False
    with acting_as(actor):
        return levels.lift(proposal.repo)


def _lapse(proposal: LevelProposal, now: datetime, report: Report) -> None:
    report.lapsed.append(proposal.repo)
    if _close(proposal, State.LAPSED, now, ACTOR):
        report.lifted.append(proposal.repo)


def _open(pk: int) -> LevelProposal:
    proposal = LevelProposal.objects.filter(pk=pk).first()
    if proposal is None:
        raise ProposalRefused("there is no such proposal")
    if proposal.state != State.OPEN:
        raise ProposalRefused(f"it is {proposal.state} already")
    return proposal


def accept(pk: int, *, actor: str) -> LevelProposal:
    """Put the repo at the proposed level (an override of the file, in the change log as
    `actor`'s), keep the export's diff, lapse its other proposals; raises ProposalRefused
    having changed nothing."""
    now = timezone.now()
    with levels.writing():
        proposal = _open(pk)
        try:
            with acting_as(actor):
                proposal.diff = levels.set_level(
                    proposal.repo, Level(proposal.to_level), expect=Level(proposal.from_level)
                )
        except levels.LevelRefused as refused:
            raise ProposalRefused(str(refused)) from None
        _close(proposal, State.ACCEPTED, now, actor)
        others = LevelProposal.objects.filter(repo_key=proposal.repo_key, state=State.OPEN)
        for other in others:
            _close(other, State.LAPSED, now, actor)
    return proposal


def dismiss(pk: int, *, actor: str) -> LevelProposal:
    """Close the proposal unapplied, lifting the temporary demotion it stood."""
    with levels.writing():
        proposal = _open(pk)
        _close(proposal, State.DISMISSED, timezone.now(), actor)
    return proposal


def diff_name(proposal: LevelProposal) -> str:
    """The diff's file name when downloaded."""
    repo = re.sub(r"[^A-Za-z0-9_.-]", "-", proposal.repo)
    return f"allowlist-{repo}-{proposal.to_level}.diff"


def export_diff(proposal: LevelProposal) -> str:
    """The allowlist export's diff: what accepting changed, or for an open proposal what it
    would change now; raises ProposalRefused when there is none to give."""
    if proposal.state == State.ACCEPTED:
        return proposal.diff
    if proposal.state != State.OPEN:
        raise ProposalRefused(f"it is {proposal.state}: it changes nothing")
    try:
        return levels.preview_diff(
            proposal.repo, Level(proposal.to_level), expect=Level(proposal.from_level)
        )
    except levels.LevelRefused as refused:
        raise ProposalRefused(str(refused)) from None
