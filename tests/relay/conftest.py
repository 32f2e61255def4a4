from collections.abc import Iterator
from pathlib import Path

import pytest

from allowlist.models import DownstreamRepo
from sandbox.github import SimulatedGitHub, generate_app_key
from tests.paths import FIXTURES
from tests.relay.support import APP_ID, SECRET, post_webhook, webhook_payload


@pytest.fixture(scope="session")
def app_key() -> str:
    return generate_app_key()


@pytest.fixture
def github(app_key, settings) -> Iterator[SimulatedGitHub]:
    """The simulated GitHub, and the relay configured to use it."""
    sim = SimulatedGitHub(app_id=APP_ID, private_key=app_key).start()
    settings.GITHUB_API_URL = sim.url
    settings.GITHUB_APP_ID = APP_ID
    settings.GITHUB_APP_PRIVATE_KEY = app_key
    settings.GITHUB_WEBHOOK_SECRET = SECRET
    settings.GITHUB_TIMEOUT = 2.0
    settings.CRCR_RETRY_FIRST = 0.2
    settings.CRCR_REDELIVERY_INTERVAL = 0
    settings.CRCR_ALLOWLIST_SYNC_INTERVAL = 0
    sim.webhook_secret = SECRET
    yield sim
    sim.stop()


@pytest.fixture
def downstream(db) -> list[DownstreamRepo]:
    """Four participating repos at every level, and one that takes nightly runs only."""
    rows = [
        ("org-a/l1", "L1", "", ["pull_request", "nightly"]),
        ("org-a/l2", "L2", "", ["pull_request", "nightly"]),
        ("org-b/l3", "L3", "npu", ["pull_request"]),
        ("Org-C/L4", "L4", "", ["pull_request", "nightly"]),
        ("org-d/nightly", "L2", "", ["nightly"]),
    ]
    return [
        DownstreamRepo.objects.create(repo=repo, level=level, device=device, events=events)
        for repo, level, device, events in rows
    ]


FIXTURE_DIR: Path = FIXTURES / "github" / "webhooks"


@pytest.fixture(scope="session")
def rsa_keys():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]


@pytest.fixture
def issuers(settings, rsa_keys):
    """Simulated GitHub Actions and Buildkite issuers, trusted by the relay."""
    from sandbox.oidc import SimulatedIssuer

    github_actions = SimulatedIssuer("github", keys={"gha-key": rsa_keys[0]}).start()
    buildkite = SimulatedIssuer("buildkite", keys={"bk-key": rsa_keys[1]}).start()
    settings.CRCR_OIDC_ISSUERS = {
        github_actions.url: {"jwks": github_actions.jwks_url, "kind": "github"},
        buildkite.url: {"jwks": buildkite.jwks_url, "kind": "buildkite"},
    }
    yield github_actions, buildkite
    github_actions.stop()
    buildkite.stop()


@pytest.fixture
def actions(issuers):
    return issuers[0]


@pytest.fixture
def dispatched(client, github, downstream, actions):
    """A PR (pull_request.opened, delivery guid-1) dispatched to every participating repo; the
    client_payload org-b/l3 received."""
    post_webhook(client, "pull_request", webhook_payload("pull_request.opened"), delivery="guid-1")
    return github.dispatches("org-b/l3")[0].body["client_payload"]
