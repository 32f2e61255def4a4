from typing import Any

from django.core.management.base import BaseCommand, CommandError

from relay.github import GitHubError
from relay.redelivery import redeliver_missed


class Command(BaseCommand):
    help = (
        "Ask GitHub to redeliver webhooks our server failed or missed (the worker does this too)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            asked = redeliver_missed()
        except GitHubError as exc:
            raise CommandError(f"GitHub: {exc}") from None
        for guid in asked:
            self.stdout.write(f"asked for {guid}")
        self.stdout.write(f"{len(asked)} deliveries asked for again.")
