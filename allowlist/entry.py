"""The allowlist's vocabulary: levels, events, and one repo's entry as a value."""

from dataclasses import dataclass

from django.db import models


class Level(models.TextChoices):
    L1 = "L1", "L1 · notify only"
    L2 = "L2", "L2 · results on the HUD"
    L3 = "L3", "L3 · check run when labelled"
    L4 = "L4", "L4 · blocking check run"

    @property
    def rank(self) -> int:
        return int(self.value[1])

    def step(self, by: int) -> "Level | None":
        """The level `by` steps up (or down); None past either end."""
        rank = self.rank + by
        return Level(f"L{rank}") if 1 <= rank <= 4 else None


@dataclass(frozen=True)
class Capabilities:
    dispatch: bool
    hud: bool
    check_run: str  # "none", "when labelled", "every PR, blocking"


# Contract §4: what each level gets. Read by the relay and the HUD; shown on /crcr.
CAPABILITIES: dict[Level, Capabilities] = {
    Level.L1: Capabilities(dispatch=True, hud=False, check_run="none"),
    Level.L2: Capabilities(dispatch=True, hud=True, check_run="none"),
    Level.L3: Capabilities(dispatch=True, hud=True, check_run="when labelled"),
    Level.L4: Capabilities(dispatch=True, hud=True, check_run="every PR, blocking"),
}


class Event(models.TextChoices):
    """What a downstream repo takes part in (the allowlist's `events`)."""

    PULL_REQUEST = "pull_request", "pull requests and pushes"
    NIGHTLY = "nightly", "nightly and periodic"


ALL_EVENTS: frozenset[Event] = frozenset(Event)

# Upstream and callback event names -> the participation that covers them (contract §4:
# push events follow pull_request; periodic reports follow nightly).
PARTICIPATION: dict[str, Event] = {
    "pull_request": Event.PULL_REQUEST,
    "push": Event.PULL_REQUEST,
    "nightly": Event.NIGHTLY,
    "periodic": Event.NIGHTLY,
}


def repo_key(repo: str) -> str:
    """How repo names are compared and keyed everywhere: case-insensitively."""
    return repo.casefold()


@dataclass(frozen=True)
class Entry:
    repo: str
    level: Level
    device: str = ""
    oncalls: tuple[str, ...] = ()
    events: frozenset[Event] = ALL_EVENTS
    repository_id: str = ""  # GitHub's ids, when an admin recorded them (not in the file)
    owner_id: str = ""
    # A temporary demotion stands (not in the file; allowlist/levels.py): the level stays as
    # it is, but no new check runs or comment mentions are made for this repo.
    suspended: bool = False

    @property
    def key(self) -> str:
        return repo_key(self.repo)

    def takes_part_in(self, event: str) -> bool:
        participation = PARTICIPATION.get(event)
        return participation is not None and participation in self.events

    def sorted_events(self) -> list[str]:
        return [event.value for event in Event if event in self.events]
