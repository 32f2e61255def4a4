from django.apps import AppConfig


class HudConfig(AppConfig):
    name = "hud"
    verbose_name = "HUD"

    def ready(self) -> None:
        from crcr_site import metrics
        from hud.watch import HudCollector

        metrics.register(HudCollector())
