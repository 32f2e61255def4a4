from typing import Any

from django.core.management.base import BaseCommand

from relay import retention


class Command(BaseCommand):
    help = (
        "Delete what is past its retention: used replay keys, old callback audit rows "
        "(CRCR_AUDIT_RETENTION_DAYS), forwarded envelopes, finished task results. The worker "
        "does this every hour; this is for cron."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = retention.prune()
        self.stdout.write(", ".join(f"{count} {kind}" for kind, count in deleted.items()))
