"""Who the caller is: OIDC issuers and their keys, Buildkite's provider map (relay/oidc.py)."""

import pytest

from hud.models import JobRecord
from tests.relay.callbacks.support import token_for, unknown_kid
from tests.relay.support import post_callback, reporter_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis_cluster]


def _map_pipeline(settings, tmp_path, repo: str, more: str = "") -> None:
    """The simulated Buildkite pipeline (org-uuid/pipe-uuid) mapped to `repo`."""
    providers = tmp_path / "ci_providers.yml"
    providers.write_text(
        "providers:\n  buildkite:\n    repo_map:\n      org-uuid/pipe-uuid:\n"
        f"        repo: {repo}{more}\n"
    )
    settings.CRCR_CI_PROVIDERS = str(providers)


def test_buildkite_identity_comes_from_the_provider_map(
    client, issuers, downstream, settings, tmp_path
):
    _, buildkite = issuers
    _map_pipeline(
        settings, tmp_path, "org-a/l2", "\n        required_claims:\n          build_branch: [main]"
    )
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


def test_a_buildkite_token_asked_for_twice_in_a_second_reports_each_status_once(
    client, issuers, dispatched, settings, tmp_path
):
    # Buildkite's tokens carry no jti: a job that reports in_progress and completed within a
    # second presents the same token twice (PyTorch's Buildkite script does).
    _, buildkite = issuers
    _map_pipeline(settings, tmp_path, "org-b/l3")
    token = buildkite.mint()
    uuid_run = {"run_id": "0190f6d5-0ad6-4c55-9e83-2f3b1f0c1a2b"}
    done = reporter_body(dispatched, "completed", conclusion="success", **uuid_run)

    started = post_callback(client, reporter_body(dispatched, "in_progress", **uuid_run), token)
    finished = post_callback(client, done, token)
    again = post_callback(client, done, token)

    assert [r.status_code for r in (started, finished, again)] == [200, 200, 200]
    assert again.json()["already_recorded"] is True
    record = JobRecord.objects.get()
    assert (record.status, record.conclusion, record.run_id) == (
        "completed",
        "success",
        uuid_run["run_id"],
    )


def test_unknown_kids_cost_at_most_one_jwks_fetch_per_cooldown(client, actions, dispatched):
    for _ in range(50):
        post_callback(client, reporter_body(dispatched, "in_progress"), unknown_kid(actions))

    assert actions.jwks_fetches == 1


def test_cached_keys_keep_working_while_the_issuer_is_down(client, actions, dispatched):
    post_callback(client, reporter_body(dispatched, "in_progress"), token_for(actions))
    actions.down = True

    response = post_callback(
        client, reporter_body(dispatched, "completed", conclusion="success"), token_for(actions)
    )

    assert response.status_code == 200
