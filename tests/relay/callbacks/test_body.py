"""The body at the edge (relay/callbacks/body.py): parsed once; bad input is a 400 naming the
field, never a 500."""

import json

import pytest

from hud.models import JobRecord
from relay.models import CallbackAudit
from tests.relay.callbacks.support import token_for
from tests.relay.support import post_callback, reporter_body

pytestmark = pytest.mark.django_db(transaction=True)


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
