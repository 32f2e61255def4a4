import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from relay.redispatch import CannotRedispatch, redispatch, told


class Command(BaseCommand):
    help = (
        "Send an upstream PR's latest head again, under a new delivery id, to one allowlisted "
        "repo or to all of them (for a downstream that missed it). Not idempotent: every run "
        "is one more re-dispatch."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pr", type=int, required=True, help="the upstream PR's number")
        parser.add_argument("--repo", help="owner/name of one allowlisted repo (default: all)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["pr"] <= 0:
            raise CommandError("--pr takes a PR number (1 or more)")
        by = f"{_user()} (manage.py redispatch)"
        try:
            done = redispatch(options["pr"], repo=options["repo"], by=by)
        except CannotRedispatch as exc:
            raise CommandError(f"nothing sent: {exc}") from None
        for line in told(done):
            self.stdout.write(line)
        if done.summary.failed:
            raise CommandError(f"{len(done.summary.failed)} dispatch(es) failed")


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # a uid without a name (a container's)
        return "unknown user"
