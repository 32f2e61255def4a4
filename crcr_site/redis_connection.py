"""The one place that opens Redis connections.

With REDIS_URL set, a pooled client for it. Without it (embedded mode), a client of an
in-process fakeredis server, shared by the threads of this process only.
"""

import functools

import fakeredis
import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

# Short timeouts: callers decide their failure mode on RedisError; they must learn it quickly.
SOCKET_TIMEOUT = 2.0
# And no retries of redis-py's own (its default since 6: ten, with backoff up to a second):
# while Redis is down they held every answer for seconds, and a script re-run after its reply
# was lost is not idempotent (a transition run twice answers "duplicate" to its own caller).
# Every caller handles RedisError itself (relay/state.py undoes what may have run).
NO_RETRY = Retry(NoBackoff(), 0)


@functools.cache
def _client_for(url: str | None) -> redis.Redis:
    if url is None:
        return fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=30,
        retry=NO_RETRY,
    )


def get_redis() -> redis.Redis:
    return _client_for(settings.REDIS_URL)
