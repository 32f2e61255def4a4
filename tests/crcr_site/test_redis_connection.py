"""The Redis client of a process: one Redis, or a Redis Cluster (crcr_site/redis_connection.py)."""

import pytest

from crcr_site import redis_connection
from tests.servers import free_port


@pytest.mark.parametrize("redis_server", ["cluster"], indirect=True)
def test_a_cluster_client_starts_from_another_node_when_redis_urls_does_not(settings, redis_server):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.REDIS_CLUSTER_NODES = redis_server.seeds

    redis_connection.get_redis().set("crcr:seen", "1")

    assert redis_server.client().get("crcr:seen") == b"1"
    redis_connection.ping()  # every master answers


@pytest.mark.parametrize("redis_server", ["cluster"], indirect=True)
def test_a_cluster_no_node_of_which_answers_is_redis_down(settings, redis_server):
    """Its client raises what is no RedisError; every caller catches it as one."""
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.REDIS_CLUSTER_NODES = ()

    with pytest.raises(redis_connection.REDIS_ERRORS):
        redis_connection.get_redis().get("crcr:seen")
