"""Create or bring up to date the ClickHouse schema at HUD_CLICKHOUSE_URL (idempotent)."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from hud.storage.clickhouse.store import ClickHouseRecordStore


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default=None, help="default: HUD_CLICKHOUSE_URL")

    def handle(self, *args: Any, **options: Any) -> None:
        url = options["url"] or settings.HUD_CLICKHOUSE_URL
        if not url:
            raise CommandError("set HUD_CLICKHOUSE_URL or pass --url")
        applied = ClickHouseRecordStore(url).migrate()
        self.stdout.write(f"applied schema versions {applied}" if applied else "schema up to date")
