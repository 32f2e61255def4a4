"""Every refusal, from every stage: its status and error, nothing recorded, the refusal audited."""

import json
import time

import pytest

from hud.models import JobRecord
from relay.models import CallbackAudit, ReplayKey
from tests.relay.callbacks.support import token_for, unknown_kid
from tests.relay.support import post_callback, reporter_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis_cluster]


REFUSED = [
    # (case, status, error, how to break the call)
    (
        "completed before in_progress",
        409,
        "not_started",
        lambda body, a: (reporter_body(body, "completed", conclusion="success"), token_for(a)),
    ),
    (
        "a delivery never dispatched",
        409,
        "no_dispatch",
        lambda body, a: (
            reporter_body(body | {"delivery_id": "never"}, "in_progress"),
            token_for(a),
        ),
    ),
    (
        "another repo's token",
        409,
        "no_dispatch",
        lambda body, a: (reporter_body(body, "in_progress"), token_for(a, repo="org-d/nightly")),
    ),
    (
        "run_id claim differs from the body",
        403,
        "claims_mismatch",
        lambda body, a: (reporter_body(body, "in_progress"), token_for(a, run_id="2222")),
    ),
    (
        "a forged dispatch token",
        403,
        "bad_dispatch_token",
        lambda body, a: (
            reporter_body(body | {"crcr": {"token": "forged", "truncated": False}}, "in_progress"),
            token_for(a),
        ),
    ),
    ("no token", 401, "token_missing", lambda body, a: (reporter_body(body, "in_progress"), None)),
    (
        "a garbage token",
        401,
        "token_invalid",
        lambda body, a: (reporter_body(body, "in_progress"), "not.a.jwt"),
    ),
    (
        "junk after a valid signature (GHSA-hxm8-2xgr-2p9m)",
        401,
        "token_invalid",
        lambda body, a: (reporter_body(body, "in_progress"), token_for(a) + "!!!!"),
    ),
    (
        "a token whose header is not a JSON object",
        401,
        "token_invalid",
        lambda body, a: (reporter_body(body, "in_progress"), _segments(b"[1]", b"{}")),
    ),
    (
        "a token nested past the JSON parser's depth",
        401,
        "token_invalid",
        lambda body, a: (reporter_body(body, "in_progress"), _segments(b"[" * 5000, b"{}")),
    ),
    (
        "an expired token",
        401,
        "token_invalid",
        lambda body, a: (
            reporter_body(body, "in_progress"),
            token_for(a, exp=int(time.time()) - 120, iat=int(time.time()) - 600),
        ),
    ),
    (
        "a token from the future",
        401,
        "token_invalid",
        lambda body, a: (
            reporter_body(body, "in_progress"),
            token_for(a, iat=int(time.time()) + 600, nbf=int(time.time()) + 600),
        ),
    ),
    (
        "alg none",
        401,
        "token_invalid",
        lambda body, a: (reporter_body(body, "in_progress"), _unsigned(a.claims("org-b/l3"))),
    ),
    (
        "HS256 signed with the public key",
        401,
        "token_invalid",
        lambda body, a: (reporter_body(body, "in_progress"), _hs256_with_public_key(a)),
    ),
    (
        "the wrong audience",
        401,
        "token_invalid",
        lambda body, a: (reporter_body(body, "in_progress"), token_for(a, aud="someone-else")),
    ),
    (
        "an untrusted issuer",
        401,
        "token_invalid",
        lambda body, a: (
            reporter_body(body, "in_progress"),
            token_for(a, iss="https://evil.example"),
        ),
    ),
    (
        "an unknown key id",
        401,
        "token_invalid",
        lambda body, a: (reporter_body(body, "in_progress"), unknown_kid(a)),
    ),
    (
        "a token that lives longer than relay/oidc.py's MAX_LIFETIME",
        401,
        "token_invalid",
        lambda body, a: (
            reporter_body(body, "in_progress"),
            token_for(a, iat=int(time.time()), exp=int(time.time()) + 13 * 3600),
        ),
    ),
    (
        "exp and iat as numeric strings (which PyJWT takes)",
        401,
        "token_invalid",
        lambda body, a: (
            reporter_body(body, "in_progress"),
            token_for(a, iat=str(int(time.time())), exp=str(int(time.time()) + 300)),
        ),
    ),
    (
        "no exp claim",
        401,
        "token_invalid",
        lambda body, a: (
            reporter_body(body, "in_progress"),
            a.mint(_without(a.claims("org-b/l3"), "exp")),
        ),
    ),
    ("not JSON", 400, "invalid_body", lambda body, a: (b"{nope", token_for(a))),
    (
        "no workflow",
        400,
        "invalid_body",
        lambda body, a: ({k: v for k, v in body.items()}, token_for(a)),
    ),
    (
        "a number for the name",
        400,
        "invalid_body",
        lambda body, a: (reporter_body(body, "in_progress", name=["CI"]), token_for(a)),
    ),
    (
        "a job name over 255 characters",
        400,
        "invalid_body",
        lambda body, a: (reporter_body(body, "in_progress", job="j" * 256), token_for(a)),
    ),
    (
        "an unknown status",
        400,
        "invalid_body",
        lambda body, a: (reporter_body(body, "queued"), token_for(a)),
    ),
    (
        "no check_run_id",
        400,
        "invalid_body",
        lambda body, a: (reporter_body(body, "in_progress", check_run_id=None), token_for(a)),
    ),
]


def _segments(header: bytes, claims: bytes) -> str:
    from jwt.utils import base64url_encode

    return f"{base64url_encode(header).decode()}.{base64url_encode(claims).decode()}.c2ln"


def _unsigned(claims):
    import jwt

    return jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]  # an unsigned token, on purpose


def _hs256_with_public_key(actions):
    """The classic confusion attack: the RSA public key used as an HMAC secret."""
    import base64
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    public = (
        actions.keys[actions.current_kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "JWT", "kid": actions.current_kid}
    signing_input = (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(actions.claims('org-b/l3')).encode())}"
    )
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _without(claims, name):
    return {k: v for k, v in claims.items() if k != name}


@pytest.mark.parametrize(
    ("status", "error", "make"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_a_refused_callback_gets_its_status_and_records_nothing(
    client, actions, dispatched, redis_server, status, error, make
):
    body, token = make(dispatched, actions)
    keys_before = redis_server.keys("crcr:{*:job:*")

    response = post_callback(client, body, token)

    assert response.status_code == status
    assert response.json()["error"] == error
    assert JobRecord.objects.count() == 0
    assert ReplayKey.objects.count() == 0
    assert redis_server.keys("crcr:{*:job:*") == keys_before
    assert not CallbackAudit.objects.filter(decision="accepted").exists()
    audit = CallbackAudit.objects.get()  # and the refusal is on record, with its reason
    assert (audit.decision, audit.status, audit.reason) == ("refused", status, error)
    assert audit.remote_addr == "127.0.0.1"
    assert audit.verified == (status not in (401, 413))
