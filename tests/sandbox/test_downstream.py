"""The demo's simulated downstream jobs (sandbox/downstream.py) report through the kit's
reporter, as a downstream job running the kit's action does."""

import json

from sandbox import downstream
from sandbox.oidc import SimulatedIssuer
from tests.fakes.faulty_relay import Answer, FaultyRelay

RECORDED = b'{"ok": true, "status": "completed"}'


def test_a_simulated_job_reports_through_the_kits_reporter():
    issuer = SimulatedIssuer("github").start()
    relay = FaultyRelay(faults=[Answer(200, body=RECORDED)])
    relay.start()
    dispatch = {"event_type": "pull_request", "delivery_id": "guid-1", "payload": {}}
    try:
        recorded = downstream.report(
            issuer, callback_url=f"{relay.url}/github/callback", repo="org/repo",
            client_payload=dispatch, job="build", job_id="99", run_id="1111",
            status="completed", conclusion="failure",
        )  # fmt: skip
    finally:
        relay.stop()
        issuer.stop()

    assert recorded is True
    [sent] = relay.carried
    assert sent.headers["User-Agent"] == "crcr-report/1"
    body = json.loads(sent.body)
    fields = ("status", "conclusion", "job_name", "check_run_id", "run_id")
    assert body["delivery_id"] == "guid-1"
    assert [body["workflow"][k] for k in fields] == ["completed", "failure", "build", "99", "1111"]
