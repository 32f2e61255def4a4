from django.apps import AppConfig


class CrcrSiteConfig(AppConfig):
    name = "crcr_site"
    verbose_name = "CRCR site"

    def ready(self) -> None:
        from crcr_site import checks  # noqa: F401  (registers the deployment checks)
