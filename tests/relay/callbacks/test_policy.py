"""What the policy decides of a verified caller: ignored, recorded or refused
(relay/callbacks/policy.py)."""

import pytest

from allowlist.models import DownstreamRepo
from hud.models import JobRecord
from relay.models import CallbackAudit
from tests.relay.callbacks.support import token_for
from tests.relay.support import post_callback, reporter_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis_cluster]


def test_a_repo_not_allowlisted_or_at_l1_is_ignored(client, actions, dispatched):
    for repo in ("nobody/listed", "org-a/l1"):
        response = post_callback(
            client, reporter_body(dispatched, "in_progress"), token_for(actions, repo=repo)
        )
        assert response.status_code == 200
        assert response.json() == {"ok": True, "status": "ignored"}
    assert JobRecord.objects.count() == 0


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


def test_known_repository_ids_must_match_the_token(client, actions, dispatched):

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
