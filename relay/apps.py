from django.apps import AppConfig


class RelayConfig(AppConfig):
    """Webhook intake, dispatch fan-out and callbacks (issues 3 and 4)."""

    name = "relay"

    def ready(self) -> None:
        from crcr_site import metrics
        from relay.ops import OutboxCollector

        metrics.register(OutboxCollector())
