from django.apps import AppConfig


class RelayConfig(AppConfig):
    """Webhook intake, dispatch fan-out and callbacks (issues 3 and 4)."""

    name = "relay"
