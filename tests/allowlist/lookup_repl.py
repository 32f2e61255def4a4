"""A second process for tests: reads repo names on stdin, answers each with level_of(repo)."""

import sys

import django

django.setup()

from allowlist.lookup import level_of  # noqa: E402

for line in sys.stdin:
    print(level_of(line.strip()) or "-", flush=True)
