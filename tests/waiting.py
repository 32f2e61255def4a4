"""Waiting for a condition with a deadline, instead of sleeping a guessed while."""

import time
from collections.abc import Callable


def wait_until[T](predicate: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.1) -> T:
    """The predicate's first truthy value, asked every `interval` seconds; AssertionError, naming
    the predicate and its last answer, when `timeout` seconds pass without one."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            name = getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(f"{name} still {value!r} after {timeout} s")
        time.sleep(interval)
    return value
