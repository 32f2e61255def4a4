"""Input that used to poison or crash the relay (issue 13, items 5-9), at each edge that takes
it: callbacks, the ingest API and webhooks. Each answer is the right one and never a 5xx; what
is accepted can be read back by every page. Then the same as properties, over generated
values for every field (hypothesis).

A permanent input error is a 400 naming the field (a retry could never succeed, so never a
503); free text that is not the relay's to refuse (an upstream PR's title, a failing test's
message) is stored with U+FFFD where PostgreSQL cannot hold a character.
"""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hud.models import JobRecord
from relay.models import CallbackAudit, Delivery, HudForward
from tests.relay.support import post_callback, post_webhook, reporter_body, webhook_payload

pytestmark = pytest.mark.django_db(transaction=True)

PR = webhook_payload("pull_request.opened")
BOT = "hud-bot-token"
NUL, SURROGATE = "\u0000", "\ud800"


@pytest.fixture
def bot(settings):
    settings.HUD_BOT_TOKEN = BOT


def raw(body: dict) -> bytes:
    """JSON as Python writes it: NaN and infinity as bare words, lone surrogates escaped."""
    return json.dumps(body, allow_nan=True).encode()


def callback(client, actions, body: dict | bytes):
    return post_callback(
        client, body if isinstance(body, bytes) else raw(body), actions.mint(repo="org-b/l3")
    )


def ingest(client, envelope: dict | bytes):
    data = envelope if isinstance(envelope, bytes) else raw(envelope)
    return client.post(
        "/api/crcr/results", data, content_type="application/json",
        headers={"x-hud-internal-bot": BOT},
    )  # fmt: skip


def envelope_of(body: dict, **metrics) -> dict:
    trusted = {"verified_repo": "Org/Backend", "downstream_repo_level": "L2", "ci_metrics": metrics}
    return {"trusted": trusted, "untrusted": {"callback_payload": body}}


def refused(response, field: str) -> None:
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["ok"] is False
    assert field in answer["detail"], answer


def readable(client) -> None:
    """Every page and the admin read what was stored."""
    for url in ("/crcr", "/crcr/org-b/l3", "/api/crcr/repos/org-b/l3", "/api/crcr/summary"):
        assert client.get(url).status_code == 200, url


# -- callbacks -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["job_name", "name", "run_id", "check_run_id"])
@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["NUL", "lone surrogate"])
def test_a_name_or_id_a_database_cannot_hold_is_a_400(client, actions, dispatched, where, bad):
    body = reporter_body(dispatched, "in_progress")
    body["workflow"][where] = f"a{bad}b"

    answer = callback(client, actions, body)

    assert answer.status_code == 400
    assert not JobRecord.objects.exists()


def test_a_nul_in_the_delivery_id_is_a_400(client, actions, dispatched):
    body = reporter_body(dispatched, "in_progress") | {"delivery_id": f"guid{NUL}1"}

    refused(callback(client, actions, body), "delivery_id")


@pytest.mark.parametrize("count", [2**31, 4294967303, 2**63, 2**64, 2**70])
def test_a_test_count_out_of_range_is_a_400_naming_it_never_wrapped(
    client, actions, dispatched, count
):
    body = reporter_body(dispatched, "in_progress")
    client_payload_done = reporter_body(
        dispatched, "completed", conclusion="success", test_results={"passed": count, "failed": 1}
    )
    assert callback(client, actions, body).status_code == 200

    refused(callback(client, actions, client_payload_done), "workflow.test_results.passed")
    assert JobRecord.objects.get().status == "in_progress"


def test_the_largest_count_is_stored_faithfully(client, actions, dispatched):
    callback(client, actions, reporter_body(dispatched, "in_progress"))
    done = reporter_body(
        dispatched, "completed", conclusion="success", test_results={"passed": 2**31 - 1}
    )

    assert callback(client, actions, done).status_code == 200
    assert JobRecord.objects.get().tests_passed == 2**31 - 1
    readable(client)


@pytest.mark.parametrize("attempt", ["99999999999", 2**31, 2**40, 2**70])
def test_a_run_attempt_out_of_range_is_a_400(client, actions, dispatched, attempt):
    body = reporter_body(dispatched, "in_progress", run_attempt=attempt)

    refused(callback(client, actions, body), "workflow.run_attempt")


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1970-01-01T00:00:00Z"]
)
def test_a_date_out_of_range_is_dropped_and_noted(client, actions, dispatched, admin_client, when):
    body = reporter_body(dispatched, "in_progress", started_at=when)

    answer = callback(client, actions, body)

    assert answer.status_code == 200
    assert JobRecord.objects.get().started_at is None
    (dropped,) = CallbackAudit.objects.get().dropped
    assert dropped.startswith("workflow.started_at")
    assert admin_client.get("/admin/hud/jobrecord/").status_code == 200
    assert (
        admin_client.get(f"/admin/hud/jobrecord/{JobRecord.objects.get().pk}/change/").status_code
        == 200
    )
    readable(client)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_number_anywhere_in_a_callback_is_a_400(client, actions, dispatched, number):
    body = raw(reporter_body(dispatched, "in_progress", extra=123456789)).replace(
        b"123456789", number.encode()
    )

    assert callback(client, actions, body).status_code == 400


def test_free_text_a_database_cannot_hold_is_stored_with_a_replacement(
    client, actions, dispatched, settings
):
    """A failing test's message and the echoed upstream payload are kept, forwarded, shown."""
    from tests.fakes.remote_hud import RemoteHud

    remote = RemoteHud("remote-token").start()
    settings.HUD_FORWARD_URL, settings.HUD_FORWARD_TOKEN = remote.url, "remote-token"
    try:
        callback(client, actions, reporter_body(dispatched, "in_progress"))
        echoed = dispatched | {"payload": {"pull_request": {"title": f"bad{NUL}title"}}}
        done = reporter_body(
            echoed, "completed", conclusion="failure",
            failed_tests_detail=[{"name": f"test{NUL}x", "message": f"boom{NUL}"}],
        )  # fmt: skip

        assert callback(client, actions, done).status_code == 200
    finally:
        remote.stop()
    record = JobRecord.objects.get()
    assert record.failed_tests_detail == [{"name": "test\ufffdx", "message": "boom\ufffd"}]
    last = HudForward.objects.order_by("id").last()
    assert last is not None
    assert last.envelope["untrusted"]["callback_payload"]["payload"]["pull_request"]["title"] == (
        "bad\ufffdtitle"
    )
    readable(client)


# -- the ingest API --------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_an_envelope_with_a_non_finite_number_is_a_400(client, bot, number):
    body = raw(envelope_of(reporter_body({"delivery_id": "g-1"}, "in_progress"), queue_time=7.25))

    answer = ingest(client, body.replace(b"7.25", number.encode()))

    assert answer.status_code == 400
    assert not JobRecord.objects.exists()


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["NUL", "lone surrogate"])
def test_an_envelope_with_a_name_a_database_cannot_hold_is_a_400(client, bot, bad):
    body = reporter_body({"delivery_id": "g-1"}, "in_progress", job=f"a{bad}b")

    assert ingest(client, envelope_of(body)).status_code == 400
    assert not JobRecord.objects.exists()


@pytest.mark.parametrize("count", [2**31, 2**63, 2**64])
def test_an_envelope_with_a_count_out_of_range_is_a_400(client, bot, count):
    body = reporter_body(
        {"delivery_id": "g-1"}, "completed", conclusion="success", test_results={"failed": count}
    )

    refused(ingest(client, envelope_of(body)), "workflow.test_results.failed")


def test_an_envelope_read_back_survives_what_is_stored(client, bot):
    body = reporter_body({"delivery_id": "g-1"}, "completed", conclusion="success")

    assert (
        ingest(client, envelope_of(body, queue_time=0.0, execution_time=1e300)).status_code == 200
    )
    for url in ("/crcr", "/crcr/Org/Backend", "/api/crcr/repos/Org/Backend", "/api/crcr/summary"):
        assert client.get(url).status_code == 200, url


# -- webhooks --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["NUL", "lone surrogate"])
def test_a_pr_title_a_database_cannot_hold_is_stored_safely_and_dispatched(
    client, github, downstream, bad
):
    payload = json.loads(json.dumps(PR))
    payload["pull_request"]["title"] = f"Fix {bad} things"
    payload["pull_request"]["user"]["login"] = f"a{bad}"

    answer = post_webhook(client, "pull_request", payload, delivery="guid-t")

    assert answer.status_code in (200, 202), answer.content
    delivery = Delivery.objects.get()
    assert (delivery.title, delivery.author) == ("Fix \ufffd things", "a\ufffd")
    sent = github.dispatches("org-b/l3")[0].body["client_payload"]["payload"]
    assert sent["pull_request"]["title"] == f"Fix {bad} things"  # verbatim downstream


# -- properties over every field -------------------------------------------------------------

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from([NUL, SURROGATE, "x" * 300, "", " ", "\ufffd", "0001-01-01T00:00:00+14:00"]),
)
HOSTILE_NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**32 + 7, 2**63, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
)
HOSTILE = st.recursive(
    st.one_of(st.none(), st.booleans(), HOSTILE_NUMBER, HOSTILE_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(HOSTILE_TEXT, inner, max_size=4)
    ),
    max_leaves=8,
)
WORKFLOW_FIELDS = [
    "status", "conclusion", "name", "run_id", "run_attempt", "job_name", "check_run_id",
    "url", "started_at", "completed_at", "artifact_url", "test_results",
    "failed_tests_detail", "triage_verdict", "schema_version",
]  # fmt: skip
TEST_FIELDS = ["passed", "failed", "skipped", "total"]
FUZZ = settings(
    max_examples=int(os.environ.get("CRCR_FUZZ_EXAMPLES", "60")),  # bench/fuzz.py: thousands
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _mutated(body: dict, data) -> dict:
    """`body` with a few workflow fields (or test counts, or the delivery id) made hostile."""
    workflow = dict(body["workflow"])
    for name in data.draw(st.lists(st.sampled_from(WORKFLOW_FIELDS), min_size=1, max_size=3)):
        workflow[name] = data.draw(HOSTILE)
    if data.draw(st.booleans()):
        workflow["test_results"] = {
            name: data.draw(HOSTILE_NUMBER)
            for name in data.draw(st.sets(st.sampled_from(TEST_FIELDS)))
        }
    mutated = body | {"workflow": workflow}
    if data.draw(st.booleans()):
        mutated["delivery_id"] = data.draw(HOSTILE)
    return mutated


@FUZZ
@given(data=st.data())
def test_no_callback_body_answers_a_5xx_and_what_is_accepted_reads_back(
    client, actions, dispatched, data
):
    job = f"fuzz-{data.draw(st.integers(0, 10**9))}"
    body = _mutated(reporter_body(dispatched, "in_progress", job=job), data)

    answer = callback(client, actions, body)

    # (403: the token names run 1111; a body naming another run is refused, rightly. 429: the
    # long runs of bench/fuzz.py send more than the rate limit.)
    assert answer.status_code in (200, 400, 403, 409, 429), (answer.status_code, answer.content)
    assert answer.json()["ok"] is (answer.status_code == 200)
    if answer.status_code == 200:
        readable(client)


@FUZZ
@given(data=st.data())
def test_no_envelope_answers_a_5xx_and_what_is_accepted_reads_back(client, bot, data):
    body = _mutated(reporter_body({"delivery_id": "g-1"}, "completed", conclusion="success"), data)
    metrics = {name: data.draw(HOSTILE) for name in ("queue_time", "execution_time")}

    answer = ingest(client, envelope_of(body, **metrics))

    assert answer.status_code in (200, 400, 409), (answer.status_code, answer.content)
    if answer.status_code == 200:
        for url in ("/crcr", "/crcr/Org/Backend", "/api/crcr/repos/Org/Backend"):
            assert client.get(url).status_code == 200, url


@FUZZ
@given(data=st.data())
def test_no_signed_webhook_answers_a_5xx(client, github, downstream, data):
    payload = json.loads(json.dumps(PR))
    pull = payload["pull_request"]
    for name in data.draw(
        st.lists(st.sampled_from(["title", "number", "body", "state"]), max_size=3)
    ):
        pull[name] = data.draw(HOSTILE)
    pull["head"]["sha"] = data.draw(st.one_of(st.just(pull["head"]["sha"]), HOSTILE))
    pull["user"]["login"] = data.draw(st.one_of(st.just("alice"), HOSTILE))
    if data.draw(st.booleans()):
        payload["action"] = data.draw(HOSTILE)
    delivery = f"guid-{data.draw(st.integers(0, 10**9))}"

    answer = post_webhook(client, "pull_request", payload, delivery=delivery)

    assert answer.status_code in (200, 202), (answer.status_code, answer.content)
