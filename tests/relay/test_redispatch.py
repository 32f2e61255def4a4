"""Re-dispatch (relay/redispatch.py): a PR's latest head sent again under a new delivery id,
by `manage.py redispatch` and the admin's actions, through the webhook's own fan-out.

They run in the test's transaction: the fan-out's threads only POST, and its answers are
recorded by the calling thread, on this connection, well within CRCR_FANOUT_DEADLINE.
"""

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from relay.models import Delivery, Dispatch, Redispatch
from tests.relay.support import PARTICIPANTS, post_callback, post_webhook, reporter_body
from tests.relay.support import webhook_payload as payload

pytestmark = pytest.mark.django_db

HEAD = "f" * 40


@pytest.fixture
def pr(client, github, downstream):
    """PR #2 opened, then pushed to (its head now HEAD), each dispatched to every repo."""
    synchronize = payload("pull_request.synchronize")
    synchronize["pull_request"]["head"]["sha"] = HEAD
    post_webhook(client, "pull_request", payload("pull_request.opened"), delivery="guid-1")
    post_webhook(client, "pull_request", synchronize, delivery="guid-2")
    return github


def test_the_command_sends_the_latest_head_again_under_a_new_delivery_id(pr, capsys):
    call_command("redispatch", "--pr", "2", "--repo", "org-b/l3")

    sent = pr.dispatches("org-b/l3")[-1].body["client_payload"]
    made = Redispatch.objects.get()
    assert sent["delivery_id"] == made.delivery.delivery_id not in ("guid-1", "guid-2")
    assert sent["payload"]["pull_request"]["head"]["sha"] == HEAD
    assert (made.original.delivery_id, made.repo) == ("guid-2", "org-b/l3")
    assert len(pr.dispatches()) == 2 * len(PARTICIPANTS) + 1  # that repo only
    out = capsys.readouterr().out
    assert f"as the new delivery {made.delivery.delivery_id}" in out
    assert "a deliberate re-dispatch, number 1 of this head" in out
    assert "dispatched: org-b/l3" in out


def test_running_it_twice_sends_twice_and_says_so(pr, capsys):
    call_command("redispatch", "--pr", "2")
    call_command("redispatch", "--pr", "2")

    assert len(pr.dispatches("org-a/l1")) == 4
    assert Delivery.objects.filter(redispatch__isnull=False).count() == 2
    assert "number 2 of this head (every one sends again)" in capsys.readouterr().out


def test_the_downstream_calls_back_on_the_new_delivery_id(pr, client, actions):
    call_command("redispatch", "--pr", "2", "--repo", "org-b/l3")
    sent = pr.dispatches("org-b/l3")[-1].body["client_payload"]

    response = post_callback(
        client, reporter_body(sent, "in_progress"), actions.mint(repo="org-b/l3")
    )

    assert response.status_code == 200
    assert response.json() == {"ok": True, "status": "in_progress"}


def test_a_pr_with_no_head_on_record_is_an_error_and_sends_nothing(pr):
    with pytest.raises(CommandError, match="nothing sent: no head of PR #99 on record"):
        call_command("redispatch", "--pr", "99")

    assert Delivery.objects.count() == 2
    assert len(pr.dispatches()) == 2 * len(PARTICIPANTS)


def test_a_repo_outside_the_allowlist_is_an_error(pr):
    with pytest.raises(CommandError, match="org-z/none is not allowlisted"):
        call_command("redispatch", "--pr", "2", "--repo", "org-z/none")

    assert not Redispatch.objects.exists()


def test_the_admin_re_dispatches_a_dispatch_to_its_repo(pr, admin_client):
    row = Dispatch.objects.get(delivery__delivery_id="guid-1", repo_key="org-a/l2")
    url = reverse("admin:relay_dispatch_changelist")

    response = admin_client.post(
        url, {"action": "redispatch_to_repo", "_selected_action": [row.pk]}, follow=True
    )

    assert response.status_code == 200
    made = Redispatch.objects.get()
    assert (made.by, made.repo, made.original.delivery_id) == ("admin", "org-a/l2", "guid-2")
    assert pr.dispatches("org-a/l2")[-1].body["client_payload"]["delivery_id"] == (
        made.delivery.delivery_id
    )
    assert "a deliberate re-dispatch" in response.content.decode()


def test_the_admin_re_dispatches_a_delivery_to_every_repo(pr, admin_client):
    rows = Delivery.objects.values_list("pk", flat=True)  # both of PR #2: sent once
    url = reverse("admin:relay_delivery_changelist")

    admin_client.post(url, {"action": "redispatch_to_all", "_selected_action": list(rows)})

    made = Redispatch.objects.get()
    assert (made.by, made.repo) == ("admin", "")
    assert sorted(d.repo for d in made.delivery.dispatches.all()) == sorted(
        Dispatch.objects.filter(delivery__delivery_id="guid-1").values_list("repo", flat=True)
    )
    page = admin_client.get(url).content.decode()
    assert "by admin, of guid-2" in page


def test_the_ops_page_marks_a_re_dispatch(pr, admin_client):
    call_command("redispatch", "--pr", "2", "--repo", "org-a/l2")

    page = admin_client.get("/crcr/ops").content.decode()

    assert "pull_request.synchronize, re-dispatched by " in page
    assert page.count("re-dispatched by ") == 1
