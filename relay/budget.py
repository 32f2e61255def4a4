"""What is left of the GitHub API budget, per installation, from GitHub's own answers.

Every answer carries `X-RateLimit-Remaining`, `-Limit` and `-Reset`. The client notes them
here (and in crcr_github_rate_limit_remaining); the newest of each installation is kept in one
Redis hash for /crcr/ops, written at most every WRITE_EVERY seconds per process and
installation (and at once when the budget is low), so that a fan-out of fifty dispatches
costs one write, not fifty. Failure mode: open — with Redis down nothing is noted, the call
goes on.
"""

import contextlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from crcr_site.redis_connection import REDIS_ERRORS, get_redis
from relay import redis_keys

WRITE_EVERY = 10.0
KEPT = 2 * 3600  # seconds the hash outlives its last write
_written: dict[str, float] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Budget:
    installation: str  # an installation id, or "app" (calls made with the App JWT)
    remaining: int
    limit: int
    reset: int  # epoch seconds
    at: float  # epoch seconds, when GitHub said so

    @property
    def low(self) -> bool:
        return self.limit > 0 and self.remaining < self.limit // 10


def note(installation: int | None, headers: Mapping[str, str]) -> None:
    remaining, limit = (
        headers.get("X-RateLimit-Remaining", ""),
        headers.get("X-RateLimit-Limit", ""),
    )
    if not (remaining.isdigit() and limit.isdigit()):
        return
    who = "app" if installation is None else str(installation)
    reset = headers.get("X-RateLimit-Reset", "")
    now = time.time()
    budget = Budget(who, int(remaining), int(limit), int(reset) if reset.isdigit() else 0, now)
    with _lock:
        if now - _written.get(who, 0.0) < WRITE_EVERY and not budget.low:
            return
        _written[who] = now
    value = json.dumps({"remaining": budget.remaining, "limit": budget.limit,
                        "reset": budget.reset, "at": budget.at})  # fmt: skip
    with contextlib.suppress(*REDIS_ERRORS):  # open: the budget is for watching, the call goes on
        pipe = get_redis().pipeline(transaction=False)
        pipe.hset(redis_keys.GITHUB_BUDGET, who, value)
        pipe.expire(redis_keys.GITHUB_BUDGET, KEPT)  # a relay that stops calling leaves nothing
        pipe.execute()


def read() -> list[Budget]:
    """Each installation's newest budget, lowest remaining share first."""
    try:
        found = get_redis().hgetall(redis_keys.GITHUB_BUDGET)
    except REDIS_ERRORS:
        return []
    budgets = []
    for who, value in found.items():
        try:
            data = json.loads(value)
            budgets.append(Budget(str(who), int(data["remaining"]), int(data["limit"]),
                                  int(data["reset"]), float(data["at"])))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(
        budgets, key=lambda b: (b.remaining / b.limit if b.limit else 1.0, b.installation)
    )
