"""A second process for tests: reads repo names on stdin, answers each with its level (or -)."""

import sys

import django

django.setup()

from allowlist.lookup import snapshot  # noqa: E402

for line in sys.stdin:
    entry = snapshot().get(line.strip())
    print(entry.level if entry else "-", flush=True)
