"""Level changes the relay makes rather than the file: an accepted proposal and a temporary
demotion.

An accepted proposal sets the level here, over the file's (`override`), and answers the
unified diff of what `allowlist_export` writes before and after: the change to propose
upstream, so the file catches up and the override can be reverted. A temporary demotion
(`suspended_since`) leaves the level as the file has it; while it stands the relay makes no
new check runs or comment mentions for the repo (Entry.suspended). It is not in the file, and
syncs leave it alone.

Each is one allowlist write: in the change log under the caller's `acting_as` actor, with the
generation bumped, so every lookup sees it in the next request.
"""

import contextlib
import difflib
from collections.abc import Iterator

from django.db import transaction
from django.utils import timezone

from allowlist import lookup
from allowlist.entry import Level
from allowlist.models import REASON_MAX, DownstreamRepo, Generation
from allowlist.yamlfile import dump_allowlist

# Where the upstream keeps its allowlist: the diff's file names, so `git apply` takes it there.
UPSTREAM_PATH = ".github/allowlist.yml"


class LevelRefused(ValueError):
    """The change was not made; the message says why, for people."""


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """A transaction holding the allowlist writers' lock (the generation row), taken first as
    every writer takes it, so a caller's own reads and writes cannot interleave with a sync's."""
    with transaction.atomic():
        Generation.lock()
        yield


def export_text() -> str:
    """What `allowlist_export` writes now (as this transaction sees it)."""
    return dump_allowlist(lookup.snapshot().entries)


def export_diff(before: str, after: str) -> str:
    """A unified diff of two exports, with the upstream file's path ('' when they are equal)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"a/{UPSTREAM_PATH}",
        tofile=f"b/{UPSTREAM_PATH}",
    )
    return "".join(lines)


def _row(repo: str) -> DownstreamRepo:
    row = DownstreamRepo.objects.filter(repo__iexact=repo).first()
    if row is None:
        raise LevelRefused(f"{repo} is not on the allowlist")
    return row


def _refusal(row: DownstreamRepo, level: Level, expect: Level | None) -> str:
    if not row.enabled:
        return f"{row.repo} is disabled on the allowlist"
    if expect is not None and row.level != expect:
        return f"{row.repo} is at {row.level} now, not {expect.value}"
    return row.cannot_be(level)


def preview_diff(repo: str, level: Level, *, expect: Level | None = None) -> str:
    """The diff `set_level` would answer now, writing nothing; raises LevelRefused as it would."""
    row = _row(repo)
    if reason := _refusal(row, level, expect):
        raise LevelRefused(reason)
    entries = lookup.snapshot().entries
    row.level = level
    moved = row.to_entry()
    after = tuple(moved if entry.key == moved.key else entry for entry in entries)
    return export_diff(dump_allowlist(entries), dump_allowlist(after))


def set_level(repo: str, level: Level, *, expect: Level | None = None) -> str:
    """Put `repo` at `level` here, over the file's (override), ending any temporary demotion;
    `expect`: only from that level. Answers the export's diff; raises LevelRefused having
    changed nothing."""
    with writing():
        row = _row(repo)
        if reason := _refusal(row, level, expect):
            raise LevelRefused(reason)
        before = export_text()
        row.level = level
        row.override = True
        row.suspended_since = None
        row.suspended_reason = ""
        row.save()
        return export_diff(before, export_text())


def suspend(repo: str, reason: str) -> bool:
    """Stand a temporary demotion of `repo`; False when one stands already (or it is not
    listed)."""
    with writing():
        row = DownstreamRepo.objects.filter(repo__iexact=repo).first()
        if row is None or row.suspended:
            return False
        row.suspended_since = timezone.now()
        row.suspended_reason = reason[:REASON_MAX]
        row.save()
        return True


def lift(repo: str) -> bool:
    """End `repo`'s temporary demotion; False when none stood."""
    with writing():
        row = DownstreamRepo.objects.filter(repo__iexact=repo).first()
        if row is None or not row.suspended:
            return False
        row.suspended_since = None
        row.suspended_reason = ""
        row.save()
        return True
