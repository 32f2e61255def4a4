"""The doctor's vocabulary: a check's state and what it found."""

import enum
from dataclasses import dataclass


class State(enum.StrEnum):
    PASS = "pass"  # noqa: S105 (a state, not a password)
    WARN = "warn"  # works, but not as the repo probably wants; or could not be checked
    FAIL = "fail"  # this is why it does not work


@dataclass(frozen=True)
class Check:
    name: str
    state: State
    finding: str  # one line
    next_step: str = ""  # what to do about it; "" when nothing
    details: tuple[str, ...] = ()  # supporting lines: refusals, file names
