"""The contract's webhook table, row by row: status, body, and no side effect for refusals."""

import json

import pytest
import redis

from relay.models import Delivery, Dispatch
from relay.webhook import signature_is_valid
from tests.relay.support import SECRET, post_webhook, signed_headers, webhook_payload

pytestmark = pytest.mark.django_db


def assert_no_side_effects(github, redis_server) -> None:
    assert Delivery.objects.count() == 0
    assert Dispatch.objects.count() == 0
    assert redis.Redis.from_url(redis_server.url).dbsize() == 0
    assert github.calls == []


PR = webhook_payload("pull_request.opened")
REFUSED = [
    # (case, event, body, headers overrides, status, error)
    ("unsigned", "pull_request", PR, {"secret": ""}, 400, "signature_missing"),
    ("wrongly signed", "pull_request", PR, {"secret": "not-the-secret"}, 401, "signature_invalid"),
    ("not JSON", "pull_request", b"{not json", {}, 400, "invalid_json"),
    ("JSON but not an object", "pull_request", b"[1, 2]", {}, 400, "invalid_json"),
    ("not UTF-8", "pull_request", b'{"a": "\xff"}', {}, 400, "invalid_json"),
    ("no delivery id", "pull_request", PR, {"delivery": None}, 400, "delivery_missing"),
    (
        "nested past any sense",
        "pull_request",
        b"[" * 100_000 + b"]" * 100_000,
        {},
        400,
        "invalid_json",
    ),
]


@pytest.mark.parametrize(
    ("event", "body", "overrides", "status", "error"),
    [r[1:] for r in REFUSED],
    ids=[r[0] for r in REFUSED],
)
def test_a_refused_webhook_gets_its_status_and_changes_nothing(
    client, github, redis_server, downstream, event, body, overrides, status, error
):
    response = post_webhook(client, event, body, **overrides)

    assert response.status_code == status
    assert response.json()["ok"] is False
    assert response.json()["error"] == error
    assert_no_side_effects(github, redis_server)


def test_an_oversized_body_is_413_before_anything_else(client, github, redis_server, settings):
    settings.CRCR_WEBHOOK_MAX_BYTES = 2048
    body = json.dumps(PR | {"padding": "x" * 4096}).encode()

    response = client.post("/github/webhook", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert_no_side_effects(github, redis_server)


IGNORED = [
    # (case, event, payload, delivery id)
    (
        "another repository",
        "pull_request",
        webhook_payload("pull_request.opened", "someone/else"),
        "d-1",
    ),
    ("a push to another repository", "push", webhook_payload("push.1", "pytorch/vision"), "d-1"),
    ("an unknown event", "issues", PR | {"action": "opened"}, "d-1"),
    (
        "an unhandled action",
        "pull_request",
        webhook_payload("pull_request.converted_to_draft"),
        "d-1",
    ),
    (
        "a check_run rerequested of another App",
        "check_run",
        webhook_payload("check_run.rerequested"),
        "d-1",
    ),
    (
        "a check_suite rerequested of another App",
        "check_suite",
        webhook_payload("check_suite.rerequested"),
        "d-1",
    ),
    (
        "another App's check_run button",
        "check_run",
        webhook_payload("check_run.requested_action"),
        "d-1",
    ),
    ("a completed check_run", "check_run", webhook_payload("check_run.completed"), "d-1"),
    (
        "an unhandled event without a delivery id",
        "installation_repositories",
        webhook_payload("installation_repositories.added"),
        None,
    ),
]


@pytest.mark.parametrize(
    ("event", "payload", "delivery"), [r[1:] for r in IGNORED], ids=[r[0] for r in IGNORED]
)
def test_an_ignored_webhook_is_200_and_changes_nothing(
    client, github, redis_server, downstream, event, payload, delivery
):
    response = post_webhook(client, event, payload, delivery=delivery)

    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert response.json()["ignored"] is True
    assert_no_side_effects(github, redis_server)


def test_ping_is_answered(client, github, redis_server):
    payload = webhook_payload("ping.with-app_id")

    response = post_webhook(client, "ping", payload)

    assert response.status_code == 200
    assert response.json() == {"ok": True, "pong": True}
    assert_no_side_effects(github, redis_server)


def test_without_a_configured_secret_every_webhook_is_refused(
    client, github, redis_server, settings
):
    settings.GITHUB_WEBHOOK_SECRET = ""

    response = post_webhook(client, "pull_request", PR)

    assert response.status_code == 503
    assert response.json()["error"] == "not_configured"
    assert_no_side_effects(github, redis_server)


def test_a_wrong_method_is_a_json_405(client):
    response = client.get("/github/webhook")

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_the_signature_is_checked_against_a_known_value():
    # Computed independently: printf '{}' | openssl dgst -sha256 -hmac webhook-secret
    headers = signed_headers(b"{}", "ping", "x", SECRET)

    assert headers["X-Hub-Signature-256"] == (
        "sha256=38d7951cd02eab1b54d0e0e4257c279d640620961e1c438188bc252f3c6732db"
    )


# Signatures with the value written out, never recomputed here: GitHub's own example
# (docs.github.com, "Validating webhook deliveries": this secret, this payload, this digest),
# and a ping signed with the tests' secret (printf '{}' | openssl dgst -sha256 -hmac ...).
GITHUB_EXAMPLE = (
    "It's a Secret to Everybody",
    b"Hello, World!",
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
)
SIGNED_PING = (
    SECRET,
    b"{}",
    "sha256=38d7951cd02eab1b54d0e0e4257c279d640620961e1c438188bc252f3c6732db",
)


def test_githubs_example_signature_is_valid():
    secret, body, signature = GITHUB_EXAMPLE

    assert signature_is_valid(body, signature, secret)


@pytest.mark.parametrize(
    "tampered",
    [
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e18",
        "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17x",
        "",
    ],
)
def test_anything_but_the_exact_signature_is_invalid(tampered):
    secret, body, _ = GITHUB_EXAMPLE

    assert not signature_is_valid(body, tampered, secret)


def _post_ping(client, body: bytes, signature: str):
    headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "p", "X-Hub-Signature-256": signature}
    return client.post("/github/webhook", body, content_type="application/json", headers=headers)


def test_a_ping_with_a_known_signature_is_answered(client, settings):
    secret, body, signature = SIGNED_PING
    settings.GITHUB_WEBHOOK_SECRET = secret

    response = _post_ping(client, body, signature)

    assert (response.status_code, response.json()) == (200, {"ok": True, "pong": True})


def test_a_known_signature_under_another_secret_is_refused(client, settings):
    _, body, signature = SIGNED_PING
    settings.GITHUB_WEBHOOK_SECRET = "another-secret"

    response = _post_ping(client, body, signature)

    assert (response.status_code, response.json()["error"]) == (401, "signature_invalid")
