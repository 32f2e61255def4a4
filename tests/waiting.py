"""Waiting for a condition with a deadline, instead of sleeping a fixed time."""

import time
from collections.abc import Callable


def wait_until[T](
    predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.05
) -> T:
    """The predicate's first truthy value, tried every `interval` seconds; AssertionError when
    there is none within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate.__name__}")
        time.sleep(interval)
    return value
