"""One live relay for the kit's tests (gunicorn, its own PostgreSQL database and Redis), trusting
a simulated GitHub Actions issuer and a simulated Buildkite one; each test reports for a pull
request of its own, so none sees another's jobs."""

import json
from collections.abc import Iterator

import pytest

from sandbox.oidc import SimulatedIssuer
from tests.kit.support import BUILDKITE_REPO, REPO, Relay
from tests.stack import relay_stack


@pytest.fixture(scope="package")
def relay(tmp_path_factory) -> Iterator[Relay]:
    actions = SimulatedIssuer("github").start()
    buildkite = SimulatedIssuer("buildkite").start()
    providers = tmp_path_factory.mktemp("kit") / "ci_providers.yml"
    providers.write_text(
        "providers:\n  buildkite:\n    repo_map:\n      org-uuid/pipe-uuid:\n"
        f"        repo: {BUILDKITE_REPO}\n"
    )
    issuers = {
        actions.url: {"jwks": actions.jwks_url, "kind": "github"},
        buildkite.url: {"jwks": buildkite.jwks_url, "kind": "buildkite"},
    }
    env = {
        "CRCR_OIDC_ISSUERS": json.dumps(issuers),
        "CRCR_CI_PROVIDERS": str(providers),
        "CRCR_RATE_LIMIT_PER_MIN": "100000",
    }
    try:
        with relay_stack(extra_env=env) as stack:
            stack.set_allowlist([REPO, BUILDKITE_REPO])
            yield Relay(stack, actions, buildkite)
    finally:
        actions.stop()
        buildkite.stop()
