"""Copy HUD records between backends: --from orm --to clickhouse, or back.

Rows are copied whole (received_at and updated_at kept). Into ClickHouse a row is a new version
of its key, so running it twice changes nothing; into the ORM, keys already there are kept.
"""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from hud.storage import RecordStore
from hud.storage.clickhouse.store import ClickHouseRecordStore
from hud.storage.orm import OrmRecordStore


class Command(BaseCommand):
    help = __doc__.split("\n\n")[0]

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--from", dest="source", choices=["orm", "clickhouse"], required=True)
        parser.add_argument("--to", dest="target", choices=["orm", "clickhouse"], required=True)
        parser.add_argument("--clickhouse-url", default=None, help="default: HUD_CLICKHOUSE_URL")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["source"] == options["target"]:
            raise CommandError("--from and --to must differ")
        url = options["clickhouse_url"] or settings.HUD_CLICKHOUSE_URL
        if not url:
            raise CommandError("set HUD_CLICKHOUSE_URL or pass --clickhouse-url")
        clickhouse = ClickHouseRecordStore(url)
        clickhouse.migrate()
        stores: dict[str, RecordStore] = {"orm": OrmRecordStore(), "clickhouse": clickhouse}
        if isinstance(clickhouse, ClickHouseRecordStore):
            clickhouse.drain()  # what the outbox holds belongs in ClickHouse first
        copied = stores[options["target"]].put_rows(stores[options["source"]].rows())
        self.stdout.write(
            f"copied {copied} records from {options['source']} to {options['target']}"
        )
