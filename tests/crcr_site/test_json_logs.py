"""LOG_FORMAT=json: one JSON object a line, and every line of a webhook's fan-out carries its
delivery id — the request's own lines and those of the pool threads that send the dispatches
(their HTTP client's lines included), each of those with its repo."""

import json

from tests.stack import relay_stack, upstream_event

REPOS = ["org/alpha", "org/beta", "org/gamma"]


def test_a_fan_out_logs_its_delivery_id_on_every_line_in_every_thread(tmp_path):
    log = tmp_path / "server.log"
    extra = {"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", "CRCR_FANOUT_THREADS": "3"}
    with relay_stack(threads=2, extra_env=extra, server_log=log) as stack:
        stack.set_allowlist(REPOS)
        log.write_bytes(b"")  # from here on: the webhook's lines only
        answered = stack.send_event(upstream_event(), "logs-1")
        assert answered is not None
        assert answered.status_code == 200
        request_id = answered.headers["X-Request-ID"]

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    ours = [line for line in lines if line.get("request_id") == request_id]
    assert ours, lines
    assert {"time", "level", "logger", "message"} <= set(ours[0])
    assert all(line["delivery_id"] == "logs-1" for line in ours)
    # The pool threads' lines: the HTTP client's POST of each dispatch, with its repo.
    posts = [line for line in ours if "/dispatches" in line["message"]]
    assert sorted(line["repo"] for line in posts) == REPOS
    sent = [line for line in ours if line["message"].startswith("dispatch logs-1 -> ")]
    assert sorted(line["repo"] for line in sent) == REPOS
