"""What the fan-out tells the HUD (hud.models.Dispatched): each dispatch GitHub accepted that
a downstream run should answer, so that one never answered shows as silent."""

import pytest

from hud.models import Dispatched
from tests.relay.support import PARTICIPANTS, post_webhook, webhook_payload

pytestmark = pytest.mark.django_db(transaction=True)

PR = webhook_payload("pull_request.opened")


def noted() -> list[tuple[str, str, int, str]]:
    rows = Dispatched.objects.order_by("repo_key", "delivery_id")
    return list(rows.values_list("repo_key", "delivery_id", "pr_number", "event_type"))


def test_each_dispatch_github_accepted_is_noted_for_the_hud(client, github, downstream):
    post_webhook(client, "pull_request", PR, delivery="guid-1")

    assert noted() == [(repo, "guid-1", 2, "pull_request") for repo in PARTICIPANTS]
    row = Dispatched.objects.get(repo_key=PARTICIPANTS[0])
    assert row.head_sha == PR["pull_request"]["head"]["sha"]
    assert row.upstream_repo == "pytorch/pytorch"


def test_a_refused_dispatch_is_noted_only_once_a_redelivery_gets_it_through(
    client, github, downstream
):
    github.fail("installation", "not_installed", repo="org-a/l2", times=1)
    post_webhook(client, "pull_request", PR, delivery="guid-1")
    assert "org-a/l2" not in [repo for repo, *_ in noted()]

    post_webhook(client, "pull_request", PR, delivery="guid-1")

    assert [repo for repo, *_ in noted()] == PARTICIPANTS  # each once


def test_a_closed_pr_and_shadow_mode_note_nothing(client, github, downstream, settings):
    post_webhook(client, "pull_request", webhook_payload("pull_request.closed"), delivery="c-1")
    assert len(github.dispatches()) == len(PARTICIPANTS)
    assert noted() == []  # dispatched, but no run answers a closed PR

    settings.CRCR_DISPATCH_ENABLED = False
    post_webhook(client, "pull_request", PR, delivery="guid-2")

    assert noted() == []
