"""What the relay tests share: recorded webhooks, signing and posting them as GitHub does, and
posting callbacks as a downstream job does."""

import hashlib
import hmac
import json
from typing import Any

from sandbox.downstream import reporter_body
from tests.paths import FIXTURES

__all__ = ["reporter_body"]

SECRET = "webhook-secret"


APP_ID = "4242"


def webhook_payload(name: str, repo: str = "pytorch/pytorch") -> dict:
    """A recorded GitHub payload, its repository renamed to `repo`."""
    payload = json.loads((FIXTURES / "github" / "webhooks" / f"{name}.json").read_text())
    if "repository" in payload:
        payload["repository"]["full_name"] = repo
    return payload


def signed_headers(body: bytes, event: str, delivery: str | None, secret: str = SECRET) -> dict:
    headers = {"X-GitHub-Event": event}
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    if secret:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return headers


def post_webhook(
    client,
    event: str,
    payload: dict | bytes,
    *,
    delivery: str | None = "d-1",
    secret: str = SECRET,
    path: str = "/github/webhook",
):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        path,
        body,
        content_type="application/json",
        headers=signed_headers(body, event, delivery, secret),
    )


PARTICIPANTS = ["org-a/l1", "org-a/l2", "org-b/l3", "org-c/l4"]


def post_callback(client, body: dict | bytes, token: str | None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post("/github/callback", data, content_type="application/json", headers=headers)


def relay_env(
    child_env: dict[str, str], github: Any, settings: Any, **extra: str
) -> dict[str, str]:
    """The environment of the relay under gunicorn sharing this test's database, Redis,
    simulated GitHub and OIDC issuers (and `extra`)."""
    return child_env | {
        "CRCR_OIDC_ISSUERS": json.dumps(settings.CRCR_OIDC_ISSUERS),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "GITHUB_API_URL": github.url,
        "GITHUB_APP_ID": github.app_id,
        "GITHUB_APP_PRIVATE_KEY": github.private_key,
        "GITHUB_WEBHOOK_SECRET": github.webhook_secret,
        "LOG_LEVEL": "WARNING",
        **extra,
    }
