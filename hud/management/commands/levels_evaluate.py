"""Propose level changes from the readiness criteria, as the worker does every CRCR_LEVELS_EVERY.

Open proposals are brought up to date, never added twice, so running it twice changes nothing
but the time they were last confirmed. With CRCR_LEVELS_AUTO_DEMOTE a new demotion stands a
temporary demotion (hud/levels.py).
"""

from typing import Any

from django.core.management.base import BaseCommand

from hud import levels


class Command(BaseCommand):
    help = __doc__.split("\n\n")[0]

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(str(levels.evaluate()))
