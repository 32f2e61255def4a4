"""POST /github/callback against simulated OIDC issuers, real PostgreSQL and the run's Redis."""

import json
import time

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext

from allowlist import lookup
from allowlist.models import DownstreamRepo
from hud.models import HudOutbox, JobRecord
from relay import redis_keys
from relay.models import CallbackAudit, ReplayKey
from tests.relay.conftest import post_callback, post_webhook, reporter_body, webhook_payload

pytestmark = pytest.mark.django_db(transaction=True)

PR = webhook_payload("pull_request.opened")


def token_for(actions, repo="org-b/l3", **claims):
    return actions.mint(repo=repo, **claims)


def test_a_job_reports_in_progress_then_completed_and_the_hud_has_it(client, actions, dispatched):
    started = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    time.sleep(0.05)
    done = post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token_for(actions)
    )

    assert started.status_code == 200
    assert started.json() == {"ok": True, "status": "in_progress"}
    assert done.json() == {"ok": True, "status": "completed"}
    record = JobRecord.objects.get()
    assert (
        record.downstream_repo,
        record.delivery_id,
        record.workflow_name,
        record.job_name,
        record.check_run_id,
    ) == ("org-b/l3", "guid-1", "CI", "build", "99887766")
    assert (record.status, record.conclusion, record.level) == ("completed", "success", "L3")
    assert (record.pr_number, record.head_sha) == (2, PR["pull_request"]["head"]["sha"])
    assert record.queue_time is not None
    assert 0 <= record.queue_time < 5  # the relay's clock, from dispatch to in_progress
    assert record.execution_time is not None
    assert record.execution_time >= 0.05
    assert record.started_at is not None  # the completed call's null erased nothing
    assert list(CallbackAudit.objects.values_list("decision", flat=True)) == ["accepted"] * 2


def test_an_accepted_callback_is_on_the_hud_and_its_api_in_the_next_request(
    client, actions, dispatched
):
    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    running = client.get("/crcr/org-b/l3").content.decode()
    api = client.get("/api/crcr/repos/org-b/l3").json()

    post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token_for(actions)
    )
    done = client.get("/api/crcr/repos/org-b/l3").json()

    assert '◔</span> <span class="words">running' in running
    (row,) = api["matrix"]["rows"]
    assert (row["pr_number"], row["cells"]["build"]["status"]) == (2, "in_progress")
    assert done["matrix"]["rows"][0]["cells"]["build"]["conclusion"] == "success"
    assert done["summary"]["counts"]["successes"] == 1


def test_a_callback_goes_through_the_outbox_and_shows_in_the_next_request(
    on_chdb, client, github, downstream, actions
):
    post_webhook(client, "pull_request", webhook_payload("pull_request.opened"), delivery="g-1")
    payload = github.dispatches("org-b/l3")[0].body["client_payload"]

    answer = post_callback(
        client, reporter_body(payload, "in_progress"), actions.mint(repo="org-b/l3")
    )
    queued = HudOutbox.objects.count()
    api = client.get("/api/crcr/repos/org-b/l3").json()

    assert answer.status_code == 200
    assert (queued, JobRecord.objects.count()) == (1, 0)  # not in the ORM's table
    assert api["matrix"]["rows"][0]["cells"]["build"]["status"] == "in_progress"
    assert HudOutbox.objects.count() == 0  # drained into ClickHouse

    post_callback(
        client,
        reporter_body(payload, "completed", conclusion="success"),
        token_for(actions),
    )
    cell = client.get("/api/crcr/repos/org-b/l3").json()["matrix"]["rows"][0]["cells"]["build"]
    assert (cell["conclusion"], cell["queue_time"] is not None) == ("success", True)  # kept


def test_the_record_names_our_dispatch_not_what_the_body_claims(client, actions, dispatched):
    forged = dispatched | {
        "payload": {
            "pull_request": {"number": 999, "head": {"sha": "f" * 40}},
            "repository": {"full_name": "evil/fork"},
        },
        "trusted": {"verified_repo": "pytorch/pytorch", "downstream_repo_level": "L4"},
    }

    post_callback(client, reporter_body(forged, "in_progress"), token_for(actions))

    record = JobRecord.objects.get()
    assert (record.pr_number, record.upstream_repo, record.level) == (2, "pytorch/pytorch", "L3")
    assert record.head_sha == PR["pull_request"]["head"]["sha"]


def _accepted(client, actions, dispatched, job: str) -> None:
    body = reporter_body(dispatched, "in_progress", job=job, check_run_id=job)
    assert post_callback(client, body, token_for(actions)).status_code == 200


def test_an_accepted_callback_is_one_write_once_the_allowlist_has_been_read(
    client, actions, dispatched
):
    """The common case reads nothing first: the allowlist this process read last decides, the
    dispatch's facts come with its DISPATCHED state, and the write is conditional on that
    allowlist still being the committed one."""
    _accepted(client, actions, dispatched, "warm")
    forged = dispatched | {"payload": {"pull_request": {"number": 999, "head": {"sha": "f" * 40}}}}

    with CaptureQueriesContext(connection) as queries:
        response = post_callback(client, reporter_body(forged, "in_progress"), token_for(actions))

    assert response.status_code == 200
    [write] = [query["sql"] for query in queries.captured_queries]
    assert "WITH w0 AS (INSERT INTO" in write
    assert "allowlist_generation" in write
    record = JobRecord.objects.get(job_name="build")
    assert (record.pr_number, record.upstream_repo, record.level) == (2, "pytorch/pytorch", "L3")
    assert record.head_sha == PR["pull_request"]["head"]["sha"]


def _change_elsewhere(repo: str, level: str) -> None:
    """Change a repo's level as another process would: this one's last read stays as it was."""
    seen = lookup.last_read()
    row = DownstreamRepo.objects.get(repo=repo)
    row.level = level
    row.save()
    assert lookup.last_read() == seen
    assert seen is not None


def test_a_callback_decided_on_an_older_allowlist_is_decided_again(
    client, actions, dispatched, redis_server
):
    _accepted(client, actions, dispatched, "warm")
    _change_elsewhere("org-b/l3", "L1")
    body = reporter_body(dispatched, "in_progress", job="late", check_run_id="late")

    response = post_callback(client, body, token_for(actions))

    assert response.json() == {"ok": True, "status": "ignored"}
    assert not JobRecord.objects.filter(job_name="late").exists()
    job = redis_keys.job("guid-1", "org-b/l3", "1111", 1, "late")
    assert not redis.Redis.from_url(redis_server.url).exists(job)  # the transition was undone
    assert CallbackAudit.objects.filter(decision="ignored").count() == 1


def test_a_record_carries_the_level_of_the_allowlist_it_was_written_under(
    client, actions, dispatched
):
    _accepted(client, actions, dispatched, "warm")
    _change_elsewhere("org-b/l3", "L4")

    _accepted(client, actions, dispatched, "after")

    assert JobRecord.objects.get(job_name="after").level == "L4"
    assert JobRecord.objects.get(job_name="warm").level == "L3"


def test_a_dispatched_state_without_the_dispatch_facts_is_read_from_the_database(
    client, actions, dispatched, redis_server
):
    """As a relay before this one wrote it: the callback is still accepted, on our record."""
    r = redis.Redis.from_url(redis_server.url)
    key = redis_keys.dispatched("guid-1", "org-b/l3")
    r.set(key, json.dumps({"state": "DISPATCHED", "timestamp": time.time() - 5}))

    _accepted(client, actions, dispatched, "old-state")

    record = JobRecord.objects.get()
    assert (record.pr_number, record.head_sha) == (2, PR["pull_request"]["head"]["sha"])
    assert record.queue_time is not None
    assert record.queue_time >= 5


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
        lambda body, a: (reporter_body(body, "in_progress"), _unknown_kid(a)),
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
    import json

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


STRANGER = None


def _unknown_kid(actions):
    """A token signed by a key the issuer never published."""
    global STRANGER
    if STRANGER is None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return actions.mint(kid="not-a-known-kid", key=STRANGER, repo="org-b/l3")


def _without(claims, name):
    return {k: v for k, v in claims.items() if k != name}


@pytest.mark.parametrize(
    ("status", "error", "make"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_a_refused_callback_gets_its_status_and_records_nothing(
    client, actions, dispatched, redis_server, status, error, make
):
    body, token = make(dispatched, actions)
    keys_before = set(redis.Redis.from_url(redis_server.url).keys("crcr:{*:job:*"))

    response = post_callback(client, body, token)

    assert response.status_code == status
    assert response.json()["error"] == error
    assert JobRecord.objects.count() == 0
    assert ReplayKey.objects.count() == 0
    assert set(redis.Redis.from_url(redis_server.url).keys("crcr:{*:job:*")) == keys_before
    assert not CallbackAudit.objects.filter(decision="accepted").exists()
    audit = CallbackAudit.objects.get()  # and the refusal is on record, with its reason
    assert (audit.decision, audit.status, audit.reason) == ("refused", status, error)
    assert audit.remote_addr == "127.0.0.1"
    assert audit.verified == (status not in (401, 413))


def test_refusals_before_identity_are_audited_at_a_bounded_rate(client, actions, settings):
    settings.CRCR_AUDIT_UNVERIFIED_PER_MIN = 3
    expired = token_for(actions, exp=int(time.time()) - 3600)

    answers = [post_callback(client, {"x": 1}, expired).status_code for _ in range(5)]

    assert answers == [401] * 5
    rows = CallbackAudit.objects.all()
    assert len(rows) == 3
    assert {(r.verified, r.repo, r.issuer, r.reason) for r in rows} == {
        (False, "org-b/l3", actions.url, "token_invalid")  # what the token claimed, unverified
    }


def test_refusals_before_identity_are_only_logged_while_redis_is_down(client, actions, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there

    response = post_callback(client, {"x": 1}, "not-a-jwt")

    assert response.status_code == 401
    assert not CallbackAudit.objects.exists()


def test_a_repo_not_allowlisted_or_at_l1_is_ignored(client, actions, dispatched):
    for repo in ("nobody/listed", "org-a/l1"):
        response = post_callback(
            client, reporter_body(dispatched, "in_progress"), token_for(actions, repo=repo)
        )
        assert response.status_code == 200
        assert response.json() == {"ok": True, "status": "ignored"}
    assert JobRecord.objects.count() == 0


def test_callbacks_from_outside_the_allowlist_are_audited_at_a_bounded_rate(
    client, actions, dispatched, settings
):
    settings.CRCR_AUDIT_UNVERIFIED_PER_MIN = 2

    answers = [
        post_callback(
            client, reporter_body(dispatched, "in_progress"), token_for(actions, repo="any/one")
        ).json()["status"]
        for _ in range(4)
    ]

    assert answers == ["ignored"] * 4
    assert CallbackAudit.objects.filter(decision="ignored").count() == 2


def test_a_token_is_good_for_one_accepted_callback(client, actions, dispatched):
    token = token_for(actions)
    post_callback(client, reporter_body(dispatched, "in_progress"), token)

    replay = post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token
    )

    assert replay.status_code == 409
    assert replay.json()["error"] == "replayed"
    assert JobRecord.objects.get().status == "in_progress"


def test_a_refused_attempt_does_not_use_up_the_token(client, actions, dispatched):
    token = token_for(actions)
    early = post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token
    )
    assert early.json()["error"] == "not_started"

    again = post_callback(client, reporter_body(dispatched, "in_progress"), token)

    assert again.status_code == 200


def test_a_second_completed_with_another_conclusion_is_a_duplicate(client, actions, dispatched):
    """(A repeat of what is recorded is answered as success: test_callback_recovery.py.)"""
    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    post_callback(
        client, reporter_body(dispatched, "completed", conclusion="failure"), token_for(actions)
    )
    second = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    third = post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token_for(actions)
    )

    assert (second.status_code, second.json()["error"]) == (409, "duplicate")
    assert (third.status_code, third.json()["error"]) == (409, "duplicate")
    assert JobRecord.objects.get().conclusion == "failure"


def test_a_rerun_is_a_new_attempt_and_starts_fresh(client, actions, dispatched):
    for attempt in ("1", "2"):
        token = token_for(actions, run_attempt=attempt)
        body = reporter_body(
            dispatched, "in_progress", run_attempt=attempt, check_run_id=f"cr-{attempt}"
        )
        assert post_callback(client, body, token).status_code == 200
    assert sorted(JobRecord.objects.values_list("run_attempt", flat=True)) == [1, 2]


def test_a_lost_dispatched_state_is_restored_from_the_database(
    client, actions, dispatched, redis_server
):
    r = redis.Redis.from_url(redis_server.url)
    r.delete(redis_keys.dispatched("guid-1", "org-b/l3"))

    response = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))

    assert response.status_code == 200
    restored = json.loads(r.get(redis_keys.dispatched("guid-1", "org-b/l3")) or "null")
    assert restored["dispatch"] == {
        "pr_number": 2,
        "head_sha": PR["pull_request"]["head"]["sha"],
        "upstream_repo": "pytorch/pytorch",
        "event": "pull_request",
    }


def test_the_dispatch_token_proves_provenance_and_can_be_required(
    client, actions, dispatched, settings
):
    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    assert CallbackAudit.objects.get().provenance == "verified"

    settings.CRCR_REQUIRE_DISPATCH_TOKEN = True
    bare = {k: v for k, v in dispatched.items() if k != "crcr"}
    refused = post_callback(
        client, reporter_body(bare, "completed", conclusion="success"), token_for(actions)
    )
    assert (refused.status_code, refused.json()["error"]) == (403, "dispatch_token_required")


def test_the_rate_limit_answers_429_with_retry_after(client, actions, dispatched, settings):
    settings.CRCR_RATE_LIMIT_PER_MIN = 2
    answers = [
        post_callback(
            client,
            reporter_body(dispatched, "in_progress", check_run_id=str(n), job=f"job-{n}"),
            token_for(actions),
        ).status_code
        for n in range(3)
    ]
    last = post_callback(
        client, reporter_body(dispatched, "in_progress", job="x"), token_for(actions)
    )

    assert answers == [200, 200, 429]
    assert last.status_code == 429
    assert 1 <= int(last["Retry-After"]) <= 60
    # The refused in_progress changed nothing: job-2 has not started, and may start later.
    settings.CRCR_RATE_LIMIT_PER_MIN = 100
    job_2 = dict(check_run_id="2", job="job-2")
    early = post_callback(
        client,
        reporter_body(dispatched, "completed", conclusion="success", **job_2),
        token_for(actions),
    )
    assert (early.status_code, early.json()["error"]) == (409, "not_started")
    assert JobRecord.objects.count() == 2
    again = post_callback(
        client, reporter_body(dispatched, "in_progress", **job_2), token_for(actions)
    )
    assert again.status_code == 200


def _charges(redis_server) -> int:
    return int(redis.Redis.from_url(redis_server.url).get(redis_keys.rate("org-b/l3")) or 0)


def test_a_callback_left_to_the_full_path_is_charged_once(
    client, actions, dispatched, settings, redis_server
):
    """A DISPATCHED state without the dispatch's facts sends an accepted callback through both
    paths: one charge, so a limit of one lets it through."""
    settings.CRCR_RATE_LIMIT_PER_MIN = 1
    key = redis_keys.dispatched("guid-1", "org-b/l3")
    redis.Redis.from_url(redis_server.url).set(
        key, json.dumps({"state": "DISPATCHED", "timestamp": time.time()})
    )

    response = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))

    assert response.status_code == 200
    assert _charges(redis_server) == 1


def test_callbacks_refused_before_the_rate_limit_are_not_charged(
    client, actions, dispatched, redis_server
):
    """As the full path never charged them, even when the fast path tried them first."""
    token = token_for(actions)
    _accepted(client, actions, dispatched, "warm")
    assert post_callback(client, reporter_body(dispatched, "in_progress"), token).status_code == 200
    charged = _charges(redis_server)
    another_job = reporter_body(dispatched, "in_progress", job="other", check_run_id="other")
    never = reporter_body(dispatched | {"delivery_id": "never"}, "in_progress", job="n")

    replayed = post_callback(client, another_job, token)
    undispatched = post_callback(client, never, token_for(actions))

    assert (replayed.status_code, replayed.json()["error"]) == (409, "replayed")
    assert (undispatched.status_code, undispatched.json()["error"]) == (409, "no_dispatch")
    assert _charges(redis_server) == charged
    job = redis_keys.job("guid-1", "org-b/l3", "1111", 1, "other")
    assert not redis.Redis.from_url(redis_server.url).exists(job)


def test_callbacks_during_an_allowlist_change_keep_their_order(client, actions, dispatched):
    """A transition decided on the older allowlist is written under the newer one, not undone
    and made again (which could let a job's completed overtake its in_progress)."""
    _accepted(client, actions, dispatched, "warm")
    _change_elsewhere("org-b/l3", "L4")

    started = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    _change_elsewhere("org-b/l3", "L3")
    done = reporter_body(dispatched, "completed", conclusion="success")
    finished = post_callback(client, done, token_for(actions))

    assert (started.status_code, finished.status_code) == (200, 200)
    record = JobRecord.objects.get(job_name="build")
    assert (record.status, record.level) == ("completed", "L3")


def test_a_completed_over_the_rate_limit_leaves_the_job_in_progress(
    client, actions, dispatched, settings
):
    assert (
        post_callback(
            client, reporter_body(dispatched, "in_progress"), token_for(actions)
        ).status_code
        == 200
    )
    settings.CRCR_RATE_LIMIT_PER_MIN = 1
    completed = reporter_body(dispatched, "completed", conclusion="success")

    refused = post_callback(client, completed, token_for(actions))
    settings.CRCR_RATE_LIMIT_PER_MIN = 100
    accepted = post_callback(client, completed, token_for(actions))

    assert (refused.status_code, refused.json()["error"]) == (429, "rate_limited")
    assert accepted.status_code == 200
    assert JobRecord.objects.get().status == "completed"


def test_a_rate_limit_that_fails_after_the_transition_leaves_no_trace(
    client, actions, dispatched, redis_server
):
    """The rate limit and the transition go to Redis together: when the rate script fails,
    the transition that ran beside it is undone, so the reporter's retry is not a duplicate."""
    shared = redis.Redis.from_url(redis_server.url)
    shared.hset(redis_keys.rate("org-b/l3"), "not", "a counter")  # INCR now fails

    failed = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    shared.delete(redis_keys.rate("org-b/l3"))
    retried = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))

    assert failed.status_code == 503
    assert retried.status_code == 200
    assert JobRecord.objects.count() == 1


def test_redis_down_is_503_and_records_nothing(client, actions, dispatched, settings):
    from tests.servers import RedisServer

    own = RedisServer().start()
    settings.REDIS_URL = own.url
    own.stop()

    response = post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert JobRecord.objects.count() == 0
    assert ReplayKey.objects.count() == 0


def test_untrusted_text_is_stored_verbatim(client, actions, dispatched):
    nasty = "<script>alert(1)</script>'; DROP TABLE hud_jobrecord; --"
    body = reporter_body(
        dispatched,
        "in_progress",
        job="ユニコード ✓ " + nasty[:100],
        failed_tests_detail=[{"name": nasty, "message": nasty}],
    )

    assert post_callback(client, body, token_for(actions)).status_code == 200

    record = JobRecord.objects.get()
    assert record.job_name.endswith(nasty[:100])
    assert record.failed_tests_detail == [{"name": nasty, "message": nasty}]


def test_malformed_optional_fields_are_dropped_and_noted(client, actions, dispatched):
    body = reporter_body(
        dispatched,
        "in_progress",
        started_at="yesterday",
        test_results={"passed": "many"},
        triage_verdict={"category": "blame-someone"},
    )

    response = post_callback(client, body, token_for(actions))

    assert response.status_code == 200
    record = JobRecord.objects.get()
    assert (record.started_at, record.tests_passed, record.triage_verdict) == (None, None, None)
    assert len(CallbackAudit.objects.get().dropped) == 3


def test_nightly_results_are_written_once(client, actions, downstream):
    body = {
        "event_type": "nightly",
        "delivery_id": "a" * 40,
        "payload": {"repository": {"full_name": "pytorch/pytorch"}, "head_sha": "a" * 40},
    }

    first = post_callback(
        client, reporter_body(body, "completed", conclusion="success"), token_for(actions)
    )
    again = post_callback(
        client, reporter_body(body, "completed", conclusion="success"), token_for(actions)
    )
    running = post_callback(client, reporter_body(body, "in_progress"), token_for(actions))

    assert first.json() == {"ok": True, "status": "completed"}
    assert again.json() == {"ok": True, "status": "completed", "already_recorded": True}
    assert running.status_code == 400
    record = JobRecord.objects.get()
    assert (record.event_type, record.pr_number, record.head_sha) == ("nightly", 0, "a" * 40)


def test_buildkite_identity_comes_from_the_provider_map(
    client, issuers, downstream, settings, tmp_path
):
    _, buildkite = issuers
    providers = tmp_path / "ci_providers.yml"
    providers.write_text(
        "providers:\n  buildkite:\n    repo_map:\n      org-uuid/pipe-uuid:\n"
        "        repo: org-a/l2\n        required_claims:\n          build_branch: [main]\n"
    )
    settings.CRCR_CI_PROVIDERS = str(providers)
    body = reporter_body(
        {"event_type": "nightly", "delivery_id": "b" * 40, "payload": {}},
        "completed",
        conclusion="failure",
    )

    accepted = post_callback(client, body, buildkite.mint())
    fork = post_callback(client, body, buildkite.mint(build_branch="fork-pr"))
    unknown = post_callback(client, body, buildkite.mint(pipeline_id="other"))

    assert accepted.status_code == 200
    assert JobRecord.objects.get().downstream_repo == "org-a/l2"
    assert (fork.status_code, fork.json()["error"]) == (403, "claim_not_allowed")
    assert (unknown.status_code, unknown.json()["error"]) == (403, "pipeline_not_registered")


def test_unknown_kids_cost_at_most_one_jwks_fetch_per_cooldown(client, actions, dispatched):
    for _ in range(50):
        post_callback(client, reporter_body(dispatched, "in_progress"), _unknown_kid(actions))

    assert actions.jwks_fetches == 1


def test_cached_keys_keep_working_while_the_issuer_is_down(client, actions, dispatched):
    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    actions.down = True

    response = post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token_for(actions)
    )

    assert response.status_code == 200


def test_a_job_in_progress_too_long_times_out_and_a_late_completed_replaces_it(
    client, actions, dispatched, settings
):
    from datetime import timedelta

    from django.core.management import call_command
    from django.utils import timezone

    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    JobRecord.objects.update(updated_at=timezone.now() - timedelta(hours=7))

    call_command("sweep_zombies")

    record = JobRecord.objects.get()
    assert (record.status, record.conclusion) == ("completed", "timed_out")
    late = post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token_for(actions)
    )
    assert late.status_code == 200
    record.refresh_from_db()
    assert (record.status, record.conclusion) == ("completed", "success")


def test_on_clickhouse_a_job_in_progress_too_long_times_out_too(
    on_chdb, client, actions, dispatched, settings
):
    from relay import zombies

    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    settings.CRCR_ZOMBIE_TIMEOUT = 0  # everything in progress is past it

    swept = zombies.sweep()

    cell = client.get("/api/crcr/repos/org-b/l3").json()["matrix"]["rows"][0]["cells"]["build"]
    assert swept == 1
    assert (cell["status"], cell["conclusion"]) == ("completed", "timed_out")
    assert JobRecord.objects.count() == 0  # it went through the ClickHouse store


def test_accepted_records_are_forwarded_to_a_remote_hud_through_the_outbox(
    client, actions, dispatched, settings
):
    from django.core.management import call_command

    from relay.models import HudForward
    from tests.fakes.remote_hud import RemoteHud

    remote = RemoteHud(token="remote-token", fail_next=1).start()
    settings.HUD_FORWARD_URL, settings.HUD_FORWARD_TOKEN = remote.url, "remote-token"
    try:
        post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
        post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))  # dup
        assert HudForward.objects.count() == 1  # only what was accepted

        deadline = time.monotonic() + 10
        while not remote.received and time.monotonic() < deadline:
            call_command("worker", "--once")
            time.sleep(0.1)

        assert len(remote.received) == 1
        trusted = remote.received[0]["trusted"]
        assert (trusted["verified_repo"], trusted["downstream_repo_level"]) == ("org-b/l3", "L3")
        assert trusted["ci_metrics"]["queue_time"] is not None
        assert remote.received[0]["untrusted"]["callback_payload"]["delivery_id"] == "guid-1"
        assert HudForward.objects.get().attempts == 2  # the first met a 503
    finally:
        remote.stop()


def test_a_forwarding_batch_never_outlives_its_lease(client, actions, dispatched, settings):
    """A slow remote HUD: a worker sends only while its lease has time for a send and hands
    the rest back unattempted, so no envelope goes twice and no attempt is counted twice."""
    from relay import hud_forward
    from relay.models import HudForward
    from tests.fakes.remote_hud import RemoteHud

    remote = RemoteHud(token="remote-token", delay=0.5).start()
    settings.HUD_FORWARD_URL, settings.HUD_FORWARD_TOKEN = remote.url, "remote-token"
    settings.CRCR_DISPATCH_LEASE = hud_forward.MIN_SEND + 0.3  # room for one send a batch
    try:
        for n in range(3):
            job = dict(job=f"job-{n}", check_run_id=str(n))
            body = reporter_body(dispatched, "in_progress", **job)
            assert post_callback(client, body, token_for(actions)).status_code == 200

        batches = [hud_forward.forward_due() for _ in range(3)]

        assert batches == [1, 1, 1]
        jobs = sorted(
            e["untrusted"]["callback_payload"]["workflow"]["job_name"] for e in remote.received
        )
        assert jobs == ["job-0", "job-1", "job-2"]
        rows = HudForward.objects.values_list("status", "attempts", "lease_owner")
        assert sorted(rows) == [("sent", 1, "")] * 3
    finally:
        remote.stop()


def test_a_remote_hud_that_answers_a_byte_at_a_time_cannot_hold_a_row_past_its_lease(
    client, actions, dispatched, settings
):
    from relay import hud_forward
    from relay.models import HudForward
    from tests.fakes.remote_hud import RemoteHud

    remote = RemoteHud(token="remote-token", drip=0.1).start()  # a 77-byte answer: 7.7 s
    settings.HUD_FORWARD_URL, settings.HUD_FORWARD_TOKEN = remote.url, "remote-token"
    settings.CRCR_DISPATCH_LEASE = hud_forward.MIN_SEND + 0.5
    try:
        post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))

        started = time.monotonic()
        sent = hud_forward.forward_due()
        took = time.monotonic() - started
    finally:
        remote.stop()

    row = HudForward.objects.get()
    assert sent == 0
    assert took < settings.CRCR_DISPATCH_LEASE + 0.3  # the row's lease had not run out
    assert (row.status, row.lease_owner) == ("pending", "")
    assert "outlasted" in row.last_error


def test_the_admin_shows_records_and_the_audit(admin_client, client, actions, dispatched):
    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    for conclusion in ("failure", "success"):
        body = reporter_body(dispatched, "completed", conclusion=conclusion)
        post_callback(client, body, token_for(actions))

    audit = admin_client.get("/admin/relay/callbackaudit/").content.decode()
    records = admin_client.get("/admin/hud/jobrecord/").content.decode()

    # The list's cells, not the filter sidebar (which names every choice, rows or none).
    assert '<td class="field-decision">Accepted</td>' in audit
    assert '<td class="field-reason">duplicate</td>' in audit
    assert "org-b/l3" in records


def test_known_repository_ids_must_match_the_token(client, actions, dispatched):
    from allowlist.models import DownstreamRepo

    row = DownstreamRepo.objects.get(repo="org-b/l3")
    row.github_repository_id = "123456"  # what the simulated issuer puts in its tokens
    row.save()
    assert (
        post_callback(
            client, reporter_body(dispatched, "in_progress"), token_for(actions)
        ).status_code
        == 200
    )

    impostor = post_callback(
        client,
        reporter_body(dispatched, "completed", conclusion="success"),
        token_for(actions, repository_id="999"),
    )

    assert (impostor.status_code, impostor.json()["error"]) == (403, "identity_mismatch")


def test_an_oversized_callback_is_413(client, actions, dispatched, settings):
    settings.CRCR_CALLBACK_MAX_BYTES = 4096
    body = reporter_body(dispatched, "in_progress", failed_tests_detail=[{"name": "x" * 5000}])

    response = post_callback(client, body, token_for(actions))

    assert response.status_code == 413
    assert JobRecord.objects.count() == 0


WRONG_TYPES: dict[str, list[object]] = {
    "delivery_id": [None, ["x"], {"a": 1}, True],
    "event_type": [3, "weekly"],
    "workflow": ["text", 3, []],
}
WORKFLOW_WRONG_TYPES: dict[str, list[object]] = {
    "status": [None, 1, ["completed"]],
    "name": [None, 3.5, {"x": 1}],
    "run_id": [None, [1], True],
    "job_name": [None, {"a": 1}, "j" * 300],
    "check_run_id": [None, [], 1.5],
}


@pytest.mark.parametrize(
    ("field", "value"),
    [(f, v) for f, values in WRONG_TYPES.items() for v in values]
    + [(f"workflow.{f}", v) for f, values in WORKFLOW_WRONG_TYPES.items() for v in values],
)
def test_a_wrong_type_in_a_required_field_is_400_never_500(
    client, actions, dispatched, field, value
):
    body = reporter_body(dispatched, "in_progress")
    if field.startswith("workflow."):
        body["workflow"][field.split(".", 1)[1]] = value
    else:
        body[field] = value

    response = post_callback(client, body, token_for(actions))

    assert response.status_code == 400, response.content
    assert JobRecord.objects.count() == 0


def test_used_replay_keys_are_pruned_after_a_day(client, actions, dispatched):
    from datetime import timedelta

    from django.utils import timezone

    from relay.periodic import JOBS

    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    ReplayKey.objects.update(used_at=timezone.now() - timedelta(days=2))

    prune = next(job for job in JOBS if job.name == "prune")
    assert prune.run() == {"replay_keys": 1, "forwarded": 0, "audit": 0, "forwards_given_up": 0}
    assert ReplayKey.objects.count() == 0


# Each is put into an otherwise good callback body, as the value of an extra key.
NOT_I_JSON = {
    "nested past any parser's depth": b"[" * 100_000 + b"]" * 100_000,
    "NaN": b"NaN",
    "a lone surrogate": b'"\\ud800"',
    "a number past a double": b"1e400",
    "not UTF-8": b'"\xff"',
}


@pytest.mark.parametrize("value", NOT_I_JSON.values(), ids=NOT_I_JSON)
def test_a_body_that_is_not_plain_json_is_400_never_500(client, actions, dispatched, value):
    """Plain JSON is I-JSON (RFC 7493): what the database and every other reader can take."""
    good = json.dumps(reporter_body(dispatched, "in_progress")).encode()
    raw = good[:-1] + b', "extra": ' + value + b"}"

    response = post_callback(client, raw, token_for(actions))

    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_body"
    assert JobRecord.objects.count() == 0
