"""The benchmarks' stand: tests/stack.py (shared with the fault tests), importable as `harness`
by the scripts here, which run with this folder first on their path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.stack import (
    APP_ID,
    DEFAULT_DATABASE,
    ROOT,
    SECRET,
    Stack,
    children,
    relay_stack,
    trusting,
    upstream_event,
)

__all__ = [
    "APP_ID",
    "DEFAULT_DATABASE",
    "ROOT",
    "SECRET",
    "Stack",
    "children",
    "relay_stack",
    "trusting",
    "upstream_event",
]
