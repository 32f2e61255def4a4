"""Accepted records forwarded to a remote HUD through the outbox (relay/hud_forward.py)."""

import time

import pytest

from tests.relay.callbacks.support import token_for
from tests.relay.support import post_callback, reporter_body
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


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

        wait_until(lambda: call_command("worker", "--once") or remote.received, interval=0.1)

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
