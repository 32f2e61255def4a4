"""Bringing the database to the allowlist file's state, and showing how the two differ.

A sync reads and parses the whole file first; only a file that parses is applied, in one
transaction, so a malformed file changes nothing and the last good allowlist stays in force.
Rows the file owns are added, updated and removed to match it; overridden rows and rows added
in the admin are left alone (see allowlist/models.py for the source-of-truth rules).
"""

import hashlib
import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from allowlist import source
from allowlist.audit import acting_as
from allowlist.entry import Entry
from allowlist.models import DownstreamRepo, Generation, Source, SyncedFile
from allowlist.yamlfile import ParsedAllowlist, parse_allowlist

logger = logging.getLogger(__name__)

FieldDiff = dict[str, tuple[object, object]]


def entry_fields(entry: Entry) -> dict[str, object]:
    return {
        "repo": entry.repo,
        "level": entry.level.value,
        "device": entry.device,
        "oncalls": list(entry.oncalls),
        "events": entry.sorted_events(),
    }


def row_fields(row: DownstreamRepo) -> dict[str, object]:
    fields = entry_fields(row.to_entry())
    if not row.enabled:
        fields["enabled"] = False
    return fields


def compare(row: DownstreamRepo, entry: Entry) -> FieldDiff:
    """Field -> (database value, file value), for the fields where they differ."""
    ours, theirs = row_fields(row), entry_fields(entry) | {"enabled": True}
    ours.setdefault("enabled", True)
    return {name: (ours[name], theirs[name]) for name in theirs if ours[name] != theirs[name]}


@dataclass
class SyncPlan:
    add: list[Entry] = field(default_factory=list)
    update: list[tuple[DownstreamRepo, Entry, FieldDiff]] = field(default_factory=list)
    remove: list[DownstreamRepo] = field(default_factory=list)
    kept: list[tuple[DownstreamRepo, FieldDiff]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changes(self) -> int:
        return len(self.add) + len(self.update) + len(self.remove)


def plan_sync(parsed: ParsedAllowlist) -> SyncPlan:
    plan = SyncPlan()
    rows = {row.repo.casefold(): row for row in DownstreamRepo.objects.all()}
    for entry in parsed.entries:
        row = rows.pop(entry.key, None)
        if row is None:
            plan.add.append(entry)
            continue
        diff = compare(row, entry)
        if row.override:
            if diff:
                plan.kept.append((row, diff))
        elif diff or row.source != Source.YAML:
            if row.source != Source.YAML:
                diff["source"] = (row.source, Source.YAML.value)
            plan.update.append((row, entry, diff))
        else:
            plan.unchanged += 1
    for row in rows.values():
        if row.source == Source.YAML and not row.override:
            plan.remove.append(row)
        elif row.source == Source.YAML:
            plan.kept.append((row, {"listed": (True, False)}))
    return plan


def apply_plan(plan: SyncPlan) -> None:
    for row in plan.remove:
        row.delete()
    for row, entry, _ in plan.update:
        row.set_from_entry(entry)
        row.enabled = True
        row.source = Source.YAML
        row.save()
    for entry in plan.add:
        row = DownstreamRepo(source=Source.YAML)
        row.set_from_entry(entry)
        row.save()


def _remember(fetched: source.FetchedFile) -> None:
    """Store the applied text as the last good copy (for ETags, outages and drift)."""
    now = timezone.now()
    values = {
        "content": fetched.text,
        "sha256": hashlib.sha256(fetched.text.encode()).hexdigest(),
        "etag": fetched.etag,
        "applied_at": now,
    }
    fresh = not (fetched.warning or fetched.unchanged)
    SyncedFile.objects.update_or_create(
        location=fetched.location,
        defaults=values | ({"fetched_at": now} if fresh else {}),
        create_defaults=values | {"fetched_at": now},
    )


@dataclass(frozen=True)
class SyncReport:
    location: str
    plan: SyncPlan
    warnings: tuple[str, ...]
    dry_run: bool


def sync(location: str, *, dry_run: bool = False, actor: str = "sync") -> SyncReport:
    """Apply the file at `location`; raises SourceError or AllowlistError having changed nothing."""
    fetched = source.read(location)
    parsed = parse_allowlist(fetched.text)
    warnings = (*((fetched.warning,) if fetched.warning else ()), *parsed.warnings)
    for warning in warnings:
        logger.warning("allowlist %s: %s", location, warning)
    with transaction.atomic():
        Generation.lock()
        plan = plan_sync(parsed)
        if not dry_run:
            with acting_as(actor):
                apply_plan(plan)
            _remember(fetched)
    return SyncReport(location, plan, warnings, dry_run)


def last_synced() -> tuple[SyncedFile | None, dict[str, Entry]]:
    """The last applied file and its entries by repo key."""
    synced = SyncedFile.objects.order_by("-applied_at").first()
    return synced, parse_allowlist(synced.content).by_key() if synced else {}


def revert_to_file(rows: list[DownstreamRepo]) -> int:
    """Clear the override and put each row back as the last synced file has it (or remove it)."""
    _, by_key = last_synced()
    with transaction.atomic():
        for row in rows:
            entry = by_key.get(row.repo.casefold())
            if entry is None and row.source == Source.YAML:
                row.delete()
                continue
            if entry is not None:
                row.set_from_entry(entry)
                row.enabled = True
                row.source = Source.YAML
            row.override = False
            row.save()
    return len(rows)


@dataclass(frozen=True)
class Drift:
    repo: str
    what: str  # a sentence for the admin
    fields: FieldDiff


def drift() -> tuple[SyncedFile | None, list[Drift]]:
    """Every difference between the database and the last synced file."""
    synced, by_key = last_synced()
    if synced is None:
        return None, []
    found = []
    for row in DownstreamRepo.objects.order_by("level", "repo"):
        entry = by_key.pop(row.repo.casefold(), None)
        if entry is None:
            what = "added in the admin" if row.source == Source.ADMIN else "not in the file"
            found.append(Drift(row.repo, what, {"level": (row.level, None)}))
        elif diff := compare(row, entry):
            found.append(Drift(row.repo, "differs from the file (override)", diff))
    for entry in by_key.values():
        found.append(
            Drift(
                entry.repo, "in the file, not in the database", {"level": (None, entry.level.value)}
            )
        )
    return synced, found
