from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from allowlist.source import SourceError
from allowlist.sync import SyncReport, sync
from allowlist.yamlfile import AllowlistError


def _show(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return "-" if value in (None, "") else str(value)


def describe(report: SyncReport) -> list[str]:
    """The diff a sync makes (or would make), one line per change."""
    plan = report.plan
    lines = []
    for entry in plan.add:
        device = f" device {entry.device}" if entry.device else ""
        lines.append(f"+ {entry.repo}: added at {entry.level.value}{device}")
    for row, _, diff in plan.update:
        if "level" in diff:
            old, new = diff["level"]
            lines.append(f"~ {row.repo}: level {old} -> {new}")
        for name, (old, new) in diff.items():
            if name != "level":
                lines.append(f"~ {row.repo}: {name} {_show(old)} -> {_show(new)}")
    for row in plan.remove:
        lines.append(f"- {row.repo}: removed (was {row.level})")
    for row, diff in plan.kept:
        fields = ", ".join(
            f"{n} {_show(a)} here, {_show(b)} in the file" for n, (a, b) in diff.items()
        )
        lines.append(f"! {row.repo}: override kept ({fields})")
    verb = "would change" if report.dry_run else "changed"
    lines.append(
        f"{len(plan.add)} added, {len(plan.update)} updated, {len(plan.remove)} removed, "
        f"{plan.unchanged} unchanged, {len(plan.kept)} overridden: {plan.changes} {verb}."
    )
    return lines


class Command(BaseCommand):
    help = "Bring the allowlist in the database to the state of a YAML file (path or URL)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "location", nargs="?", help="path or URL; default: the CRCR_ALLOWLIST setting"
        )
        parser.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        location = options["location"] or settings.CRCR_ALLOWLIST
        try:
            report = sync(location, dry_run=options["dry_run"])
        except (SourceError, AllowlistError) as exc:
            raise CommandError(f"{exc}\nThe allowlist in force is unchanged.") from None
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        for line in describe(report):
            self.stdout.write(line)
