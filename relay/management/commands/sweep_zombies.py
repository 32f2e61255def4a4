from typing import Any

from django.core.management.base import BaseCommand

from relay import zombies


class Command(BaseCommand):
    help = (
        "Complete as timed_out the jobs in progress past CRCR_ZOMBIE_TIMEOUT (so does the worker)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"{zombies.sweep()} jobs timed out.")
