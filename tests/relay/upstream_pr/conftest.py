import pytest

from tests.relay.support import post_webhook
from tests.relay.upstream_pr.support import PR


@pytest.fixture
def signal(settings, github, downstream, actions, client):
    """A PR dispatched to every participating repo; the L4 aggregate settles at once."""
    settings.CRCR_CHECK_SETTLE = 0
    post_webhook(client, "pull_request", PR, delivery="guid-1")
    return github
