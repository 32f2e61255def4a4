"""The callback state machine in Redis: one Lua script per transition, atomic per dispatch.

    (none) --dispatch--> DISPATCHED            (written by the fan-out)
    job: (none) --in_progress--> IN_PROGRESS --completed--> COMPLETED

Each transition records its id (`tx`) so that a transition whose database commit failed can
be undone by `compensate`, only while the state still carries that id. A job timed out by the
zombie sweep is COMPLETED with `timed_out`; a genuine `completed` may still replace it. Keys
are listed in relay/redis_keys.py; both keys of a transition share one hash tag, so that in a
Redis Cluster they are on one node. A callback's transition is charged to its repo's rate limit
in the same round trip (`RateLimit`); in a cluster, one after the other (`_charged`).

Scripts are sent whole (EVAL), never by their SHA alone: a replica that a failover made master
has no script cache (Redis replicates none), and reloading a script on every master would fail
while any one of them is down.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from crcr_site.redis_connection import REDIS_ERRORS, get_redis, is_cluster

logger = logging.getLogger(__name__)

# How a DISPATCHED state put back from the database says so (dispatched_state(restored=True)),
# as the same encoder writes it; found by a plain substring search, no JSON decoding.
RESTORED = json.dumps({"restored": True})[1:-1]
# A job with no state under a DISPATCHED state restored from the database is 'unknown' until
# the caller has put back what the database holds of it (ARGV[4] = '1'): Redis lost both.
_IN_PROGRESS = """
local dispatched = redis.call('GET', KEYS[1])
if not dispatched then return {'no_dispatch'} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'duplicate'} end
if ARGV[4] ~= '1' and string.find(dispatched, 'RESTORED', 1, true) then
  return {'unknown'}
end
redis.call('SET', KEYS[2], cjson.encode({state='IN_PROGRESS', at=ARGV[1], tx=ARGV[2]}),
           'EX', ARGV[3])
return {'ok', dispatched}
""".replace("RESTORED", RESTORED)

_COMPLETED = """
local dispatched = redis.call('GET', KEYS[1])
if not dispatched then return {'no_dispatch'} end
local current = redis.call('GET', KEYS[2])
if not current then return {'not_started'} end
local state = cjson.decode(current)
if state.state == 'COMPLETED' and not state.timed_out then return {'duplicate'} end
local started = state.started or state.at
redis.call('SET', KEYS[2], cjson.encode({state='COMPLETED', at=ARGV[1], started=started,
           tx=ARGV[2], prev=current}), 'EX', ARGV[3])
return {'ok', started, dispatched}
"""

_TIME_OUT = """
local current = redis.call('GET', KEYS[1])
if not current then return {'gone'} end
local state = cjson.decode(current)
if state.state ~= 'IN_PROGRESS' then return {'not_in_progress'} end
redis.call('SET', KEYS[1], cjson.encode({state='COMPLETED', timed_out=true, at=ARGV[1],
           started=state.at, tx=ARGV[2], prev=current}), 'EX', ARGV[3])
return {'ok', state.at}
"""

_COMPENSATE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local state = cjson.decode(current)
if state.tx ~= ARGV[1] then return 0 end
if state.prev then
  redis.call('SET', KEYS[1], state.prev, 'EX', ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""

_REFUND = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""

_RATE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if count > tonumber(ARGV[1]) then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 1 then ttl = 1 end
  return ttl
end
return 0
"""


@dataclass(frozen=True)
class Transition:
    result: str  # "ok", "no_dispatch", "duplicate", "not_started", "unknown", "rate_limited"
    since: float | None = None  # DISPATCHED time (in_progress) or IN_PROGRESS time (completed)
    retry_after: int = 0  # rate_limited: seconds until the caller's window resets
    dispatched: dict[str, Any] | None = None  # ok: the DISPATCHED state it moved under


@dataclass(frozen=True)
class RateLimit:
    """A counter the transition is charged to: at most `limit` calls per `window` seconds."""

    key: str
    limit: int
    window: int = 60


def _run(script: str, keys: list[str], args: list[str | int | float]) -> Any:
    return get_redis().eval(script, len(keys), *keys, *args)


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _moved(
    script: str,
    dispatched_key: str,
    job_key: str,
    *,
    now: float,
    tx: str,
    rate: RateLimit | None,
    since: Callable[[list[Any], dict[str, Any]], float],
    consulted: bool,
) -> Transition:
    """Run a job transition, charged to `rate` in the same round trip (`_charged`); `since`
    reads the time it counts from out of the script's reply and the DISPATCHED state (the
    reply's last item). A transition that turns out to be over the limit is compensated, as
    one whose record could not be stored is: only callers within their limit change the
    state."""
    keys = [dispatched_key, job_key]
    args: list[str | int | float] = [repr(now), tx, _ttl(), "1" if consulted else "0"]
    try:
        wait, reply = (
            (0, _run(script, keys, args)) if rate is None else _charged(rate, script, keys, args)
        )
    except REDIS_ERRORS:
        # The script may have run before the error reached us (its reply lost, or the other
        # script of the pipeline failing): the caller answers 503, so it must not stay.
        try_compensate(job_key, tx)
        raise
    if reply is None:  # over the limit, and never tried
        return Transition("rate_limited", retry_after=wait)
    result = _decode(reply[0])
    if wait and (result != "ok" or try_compensate(job_key, tx)):
        return Transition("rate_limited", retry_after=wait)
    # (Over the limit but not undone, Redis failing meanwhile: kept and recorded, not lost.)
    if result != "ok":
        return Transition(result)
    dispatched = json.loads(reply[-1])
    return Transition("ok", since(reply, dispatched), dispatched=dispatched)


def _charged(
    rate: RateLimit, script: str, keys: list[str], args: list[str | int | float]
) -> tuple[int, Any]:
    """What charging `rate` said (0 within the limit, else the seconds to wait) and the
    transition's reply (None: not tried). A transition that fails gives its charge back.

    The rate key lives in another hash slot than the job's, so on one Redis this is a pipeline
    of the two scripts. In a Redis Cluster they are on different nodes, and the cluster
    client's pipeline sends a command again, alone, when its reply was lost: a script run
    twice answers "duplicate" to its own caller. So there they go one after the other, each
    sent once, and a caller over its limit makes no transition."""
    client = get_redis()
    if is_cluster(client):
        wait = int(_run(_RATE, [rate.key], [rate.limit, rate.window]))
        if wait:
            return wait, None
        try:
            return 0, _run(script, keys, args)
        except REDIS_ERRORS:
            _give_back(rate)
            raise
    pipe = client.pipeline(transaction=False)
    pipe.eval(_RATE, 1, rate.key, rate.limit, rate.window)
    pipe.eval(script, len(keys), *keys, *args)
    charge, reply = pipe.execute(raise_on_error=False)
    if isinstance(charge, Exception):
        raise charge
    if isinstance(reply, Exception):
        _give_back(rate)
        raise reply
    return int(charge), reply


def _give_back(rate: RateLimit) -> None:
    try:
        refund(rate)
    except REDIS_ERRORS as exc:
        logger.warning("rate limit charge on %s not refunded: %s", rate.key, exc)


def start(
    dispatched_key: str,
    job_key: str,
    *,
    now: float,
    tx: str,
    rate: RateLimit | None = None,
    consulted: bool = False,
) -> Transition:
    """in_progress: `since` is when the dispatch was sent. "unknown" when the job has no
    state under a restored DISPATCHED state and the database was not `consulted` yet."""
    return _moved(
        _IN_PROGRESS,
        dispatched_key,
        job_key,
        now=now,
        tx=tx,
        rate=rate,
        since=lambda _, d: float(d["timestamp"]),
        consulted=consulted,
    )


def complete(
    dispatched_key: str,
    job_key: str,
    *,
    now: float,
    tx: str,
    rate: RateLimit | None = None,
    consulted: bool = False,
) -> Transition:
    """completed: `since` is when the job started."""
    return _moved(
        _COMPLETED,
        dispatched_key,
        job_key,
        now=now,
        tx=tx,
        rate=rate,
        since=lambda reply, _: float(_decode(reply[1])),
        consulted=consulted,
    )


def time_out(job_key: str, *, now: float, tx: str) -> Transition:
    reply = _run(_TIME_OUT, [job_key], [repr(now), tx, _ttl()])
    if _decode(reply[0]) != "ok":
        return Transition(_decode(reply[0]))
    return Transition("ok", float(_decode(reply[1])))


def compensate(job_key: str, tx: str) -> bool:
    """Undo transition `tx` if it is still the latest on `job_key`."""
    return bool(_run(_COMPENSATE, [job_key], [tx, _ttl()]))


def try_compensate(job_key: str, tx: str) -> bool:
    """compensate(), False when Redis fails (the transition may then stay: logged)."""
    try:
        compensate(job_key, tx)
        return True
    except REDIS_ERRORS as exc:
        logger.warning("transition %s on %s could not be undone: %s", tx, job_key, exc)
        return False


# What a callback needs of its dispatch record, by the names Delivery and DispatchOnRecord share.
DISPATCH_FACTS = ("pr_number", "head_sha", "upstream_repo", "event")


def facts_of(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in DISPATCH_FACTS}


def dispatched_state(timestamp: float, dispatch: dict[str, Any], **extra: Any) -> str:
    """The DISPATCHED state (relay/redis_keys.py): when it was sent, and the facts of our
    dispatch record a callback needs (pr_number, head_sha, upstream_repo, event), so that an
    accepted callback need not read them from the database."""
    return json.dumps({"state": "DISPATCHED", "timestamp": timestamp, "dispatch": dispatch} | extra)


def restore_dispatched(dispatched_key: str, timestamp: float, dispatch: dict[str, Any]) -> None:
    """Put back a DISPATCHED state Redis lost, from the database's dispatch record."""
    get_redis().set(
        dispatched_key, dispatched_state(timestamp, dispatch, restored=True), nx=True, ex=_ttl()
    )


def restore_job(
    job_key: str, *, completed: bool, started: float, at: float, timed_out: bool = False
) -> None:
    """Put back a job state Redis lost, from what the database holds of the job: IN_PROGRESS
    since `started`, or COMPLETED at `at` (a timed-out one may still be replaced). Only where
    Redis has none: a state written meanwhile is newer."""
    value: dict[str, str | bool]
    if completed:
        value = {"state": "COMPLETED", "at": repr(at), "started": repr(started), "tx": "restored"}
        if timed_out:
            value["timed_out"] = True
    else:
        value = {"state": "IN_PROGRESS", "at": repr(started), "tx": "restored"}
    get_redis().set(job_key, json.dumps(value), nx=True, ex=_ttl())


def peek(job_key: str) -> dict[str, Any] | None:
    """A job's state as Redis holds it (None: none, or unreadable)."""
    raw = get_redis().get(job_key)
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def rate_limited(rate: RateLimit) -> int:
    """Charge one call to `rate`: 0 when it is within the limit, else the seconds until the
    window resets."""
    return int(_run(_RATE, [rate.key], [rate.limit, rate.window]))


def refund(rate: RateLimit) -> None:
    """Take back one charge to `rate` (none once its window has passed)."""
    _run(_REFUND, [rate.key], [])


def _ttl() -> int:
    return int(settings.CRCR_DISPATCH_TTL)
