from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from allowlist.yamlfile import REPO_RE
from relay.doctor.report import diagnose


class Command(BaseCommand):
    help = (
        "Why a downstream repo's integration works or not: the App's installation and "
        "permissions, its allowlist entry, its workflow, its last dispatch and callback. "
        "Exits 1 when a check fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("repo", help="owner/name of the downstream repo")

    def handle(self, *args: Any, **options: Any) -> None:
        repo = options["repo"].strip().strip("/")
        if not REPO_RE.match(repo):
            raise CommandError(f"{options['repo']!r} is not owner/name")
        report = diagnose(repo)
        self.stdout.write(f"CRCR onboarding doctor: {report.repo}")
        for check in report.checks:
            self.stdout.write(f"{check.state.upper():<4}  {check.name}: {check.finding}")
            if check.next_step:
                self.stdout.write(f"      next: {check.next_step}")
            for line in check.details:
                self.stdout.write(f"      - {line}")
        if report.failed:
            names = ", ".join(check.name for check in report.failed)
            raise CommandError(f"{len(report.failed)} check(s) failed: {names}")
        self.stdout.write("No check failed.")
