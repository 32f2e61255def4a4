"""The one place that opens Redis connections.

With REDIS_URL set, a pooled client for it: of one Redis, or, with REDIS_CLUSTER, of a Redis
Cluster that REDIS_URL names a node of (REDIS_CLUSTER_NODES: more nodes to start from, when that
one does not answer). Without it (embedded mode), a client of an in-process fakeredis server,
shared by the threads of this process only.

In a cluster, the keys one command or script touches together share a hash tag
(relay/redis_keys.py), and the callback's transition is not pipelined with its rate limit
(relay/state.py says why).
"""

import functools

import fakeredis
import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

# Short timeouts: callers decide their failure mode on RedisError; they must learn it quickly.
SOCKET_TIMEOUT = 2.0
# And no retries of redis-py's own (its default since 6: ten, with backoff up to a second):
# while Redis is down they held every answer for seconds, and a script re-run after its reply
# was lost is not idempotent (a transition run twice answers "duplicate" to its own caller).
# Every caller handles REDIS_ERRORS itself (relay/state.py undoes what may have run).
NO_RETRY = Retry(NoBackoff(), 0)

# What a call to Redis raises when Redis cannot answer it. The cluster client raises a
# RedisClusterException, which is not a RedisError, when no node it knows answers (the whole
# cluster down, or REDIS_URL's node at start) or a slot is served by none.
REDIS_ERRORS = (RedisError, RedisClusterException)

type Client = redis.Redis | redis.RedisCluster


@functools.cache
def _client_for(url: str | None, cluster: bool, nodes: tuple[str, ...]) -> Client:
    if url is None:
        return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    if cluster:
        return redis.RedisCluster.from_url(
            url,
            startup_nodes=[ClusterNode(*_host_port(node)) for node in nodes],
            # The cluster decides what it serves with a slot down
            # (cluster-require-full-coverage); the client is not stricter.
            require_full_coverage=False,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=30,
            retry=NO_RETRY,
        )
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=30,
        retry=NO_RETRY,
    )


def _host_port(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host.strip("[]"), int(port)


def get_redis() -> Client:
    """The client of this process (raises one of REDIS_ERRORS when a cluster cannot be
    reached at all: its client finds the nodes as it starts)."""
    return _client_for(settings.REDIS_URL, settings.REDIS_CLUSTER, settings.REDIS_CLUSTER_NODES)


def is_cluster(client: Client) -> bool:
    return isinstance(client, redis.RedisCluster)


def ping() -> None:
    """Raise one of REDIS_ERRORS unless Redis answers: one Redis, or every master of a cluster
    (each holds its share of the keys, so one that does not answer is Redis down for them)."""
    client = get_redis()
    if isinstance(client, redis.RedisCluster):
        client.ping(target_nodes=redis.RedisCluster.PRIMARIES)
    else:
        client.ping()
