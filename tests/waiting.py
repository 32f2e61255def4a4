"""Waiting on a condition instead of sleeping for a guessed time."""

import time
from collections.abc import Callable


def wait_until[T](
    predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05
) -> T:
    """The predicate's first truthy value, asked every `interval` seconds until `timeout`;
    AssertionError if it never comes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        time.sleep(interval)
