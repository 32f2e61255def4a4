"""What the simulated downstream CI's jobs do: per repo, how long they queue and run and how
they end. The demo's history (history.py) and its live runners (downstream.py) both draw from
here, so the live results look like the history they join and the pages' figures hold still.

Real CI takes minutes to hours; a demo watched for minutes runs it `time_scale` times faster
(`manage.py demo --time-scale`): the history is written and the live jobs run on that clock, so
every duration the relay measures is on one scale, which the HUD states (CRCR_HUD_NOTICE).
"""

import random
import zlib
from dataclasses import dataclass

from allowlist.entry import Level
from hud.reports import PROBE_EXPECTATIONS

JOBS = ("build", "lint", "test-1", "test-2", "test-3", "test-4")
PROBE_JOBS = ("ok", "xfail", "xcancel", "xtimeout")
TIMEOUT = 3 * 3600.0  # what a timed-out job ran for
QUEUE = (5.0, 900.0)  # seconds, before a repo's own factor
EXECUTION = (300.0, 3600.0)


@dataclass(frozen=True)
class Profile:
    """One repo's jobs: queue and execution ranges (seconds, uniform) and how often an attempt
    fails (an eighth of those time out)."""

    queue: tuple[float, float]
    execution: tuple[float, float]
    flaky: float


@dataclass(frozen=True)
class Attempt:
    conclusion: str
    queue: float  # seconds, on the demo's clock
    execution: float


def profile(repo: str, level: str) -> Profile:
    """A repo's own profile, the same every run: its runners are slower or faster than the
    others' by a factor taken from its name (0.6 to 1.4), busier or quieter likewise, and its
    tests flakier or steadier (an L4 repo's least)."""
    digest = zlib.crc32(repo.casefold().encode())
    runs, waits, flakes = (0.6 + (digest // 1000**n % 1000) / 1250 for n in range(3))
    return Profile(
        queue=(QUEUE[0] * waits, QUEUE[1] * waits),
        execution=(EXECUTION[0] * runs, EXECUTION[1] * runs),
        flaky=(0.02 if level == Level.L4 else 0.08) * flakes,
    )


def jobs(*, probe: bool) -> tuple[str, ...]:
    return PROBE_JOBS if probe else JOBS


def attempt(
    rng: random.Random,
    repo: Profile,
    job: str,
    *,
    time_scale: float = 1.0,
    flaky: float | None = None,
) -> Attempt:
    """One attempt of `job`: the probe's jobs end as expected, others by the repo's flakiness
    (or `flaky`); its durations on the demo's clock (divided by `time_scale`)."""
    roll = rng.random()
    chance = repo.flaky if flaky is None else flaky
    conclusion = PROBE_EXPECTATIONS.get(job) or (
        "timed_out" if roll < chance / 8 else "failure" if roll < chance else "success"
    )
    execution = rng.uniform(*repo.execution) if conclusion != "timed_out" else TIMEOUT
    queue = rng.uniform(*repo.queue)
    return Attempt(conclusion, queue / time_scale, execution / time_scale)
