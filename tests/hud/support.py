"""What several HUD tests share: another relay's envelope, and sending it to the ingest API."""

import json

from tests.relay.support import reporter_body, webhook_payload

TOKEN = "hud-bot-token"
PR = webhook_payload("pull_request.opened")


def envelope(
    status="in_progress",
    *,
    queue_time=None,
    execution_time=None,
    level="L2",
    payload=None,
    **workflow,
):
    client_payload = {
        "event_type": "pull_request",
        "delivery_id": "guid-9",
        "payload": PR if payload is None else payload,
    }
    trusted = {
        "verified_repo": "Org/Backend",
        "ci_metrics": {"queue_time": queue_time, "execution_time": execution_time},
    }
    if level:
        trusted["downstream_repo_level"] = level
    return {
        "trusted": trusted,
        "untrusted": {"callback_payload": reporter_body(client_payload, status, **workflow)},
    }


def send(client, body, token=TOKEN):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"x-hud-internal-bot": token} if token is not None else {}
    return client.post("/api/crcr/results", data, content_type="application/json", headers=headers)
