"""Deployment checks: what a production instance must not run with.

They are `deploy=True` checks, so `manage.py check --deploy` reports them while `migrate` and
the management commands keep working on embedded defaults.
"""

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register


@register(deploy=True)
def check_production_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if settings.DEBUG:
        messages.append(
            Error("DJANGO_DEBUG is on.", hint="Unset DJANGO_DEBUG in production.", id="crcr.E001")
        )
    if settings.SECRET_KEY == settings.EMBEDDED_SECRET_KEY:
        messages.append(
            Error(
                "DJANGO_SECRET_KEY is the public embedded-mode key.",
                hint="Set DJANGO_SECRET_KEY or DJANGO_SECRET_KEY_FILE to a long random value.",
                id="crcr.E002",
            )
        )
    if not settings.GITHUB_WEBHOOK_SECRET:
        messages.append(
            Error(
                "GITHUB_WEBHOOK_SECRET is not set: webhooks cannot be verified.",
                hint="Set GITHUB_WEBHOOK_SECRET or GITHUB_WEBHOOK_SECRET_FILE to the App's secret.",
                id="crcr.E003",
            )
        )
    if not settings.GITHUB_APP_ID or not settings.GITHUB_APP_PRIVATE_KEY:
        messages.append(
            Error(
                "The GitHub App is not configured: no dispatch can be sent.",
                hint="Set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (or _FILE).",
                id="crcr.E004",
            )
        )
    if settings.REDIS_URL is None:
        messages.append(
            Error(
                "REDIS_URL is not set: each process would keep its own in-process Redis.",
                hint="Point REDIS_URL at the shared Redis (redis:// or rediss://; a Redis Cluster: "
                "one of its nodes, with REDIS_CLUSTER=true).",
                id="crcr.E005",
            )
        )
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        messages.append(
            Warning(
                "DATABASE_URL is SQLite: fine for one host, not for several.",
                hint="Use PostgreSQL (DATABASE_URL=postgres://...) to run more than one host.",
                id="crcr.W001",
            )
        )
    return messages


# A send makes at most six GitHub calls (installation, token, dispatch; all three again when
# the App turns out to have been reinstalled), each bounded by the connect and read timeouts;
# the lease must outlast them or two senders could overlap.
def slowest_send(github_timeout: float) -> float:
    return 6 * (github_timeout + min(3.05, github_timeout))


@register()
def check_dispatch_lease(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if slowest_send(settings.GITHUB_TIMEOUT) < settings.CRCR_DISPATCH_LEASE:
        return []
    return [
        Error(
            f"CRCR_DISPATCH_LEASE ({settings.CRCR_DISPATCH_LEASE} s) does not outlast the slowest "
            f"send ({slowest_send(settings.GITHUB_TIMEOUT)} s with GITHUB_TIMEOUT).",
            hint="Raise CRCR_DISPATCH_LEASE or lower GITHUB_TIMEOUT.",
            id="crcr.E006",
        )
    ]
