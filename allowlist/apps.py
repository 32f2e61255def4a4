from django.apps import AppConfig


class AllowlistConfig(AppConfig):
    name = "allowlist"
    verbose_name = "Allowlist"

    def ready(self) -> None:
        from allowlist import audit  # noqa: F401  (connects the change-log receivers)
