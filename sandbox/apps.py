from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """Simulated GitHub, OIDC issuers and downstream CI, and `manage.py demo` that runs them
    beside the relay. It imports the product; nothing in the product imports it."""

    name = "sandbox"
