"""What several allowlist tests (and the HUD's) share: running a sync, writing a file, the
malformed files, another process's lookup."""

import io
import subprocess
from pathlib import Path

from django.core.management import call_command

from allowlist import lookup
from tests.paths import PYTHON, ROOT


def level_in_force(repo: str) -> str | None:
    """The level the relay and the HUD see for `repo` (any spelling), None when not listed."""
    entry = lookup.snapshot().get(repo)
    return entry.level if entry else None


def run_sync(location: str, *args: str) -> str:
    out = io.StringIO()
    call_command("allowlist_sync", location, *args, stdout=out, stderr=out)
    return out.getvalue()


def write(tmp_path: Path, text: str, name: str = "allowlist.yml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


class SecondProcess:
    """Another Python process asking its allowlist snapshot for levels, with its own in-memory
    cache."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, str(ROOT / "tests" / "allowlist" / "lookup_repl.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )

    def level_of(self, repo: str) -> str:
        assert self.proc.stdin
        assert self.proc.stdout
        self.proc.stdin.write(repo + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


MALFORMED = [
    (
        "duplicate across levels",
        "L1: [a/b]\nL2: [a/b]\n",
        "L2[0]: 'a/b' is already listed at L1[0]",
    ),
    (
        "duplicate in another spelling",
        "L1: [a/b]\nL3:\n  npu:\n    A/B: []\n",
        "L3.npu.A/B: 'A/B' is already listed at L1[0]",
    ),
    ("L3 given as a list", "L3: [a/b]\n", "L3 must be a mapping of device names to repos"),
    ("empty device", "L3:\n  '':\n    a/b: []\n", "L3: a device name is empty"),
    ("blank device", "L3:\n  '  ':\n    a/b: []\n", "L3: a device name is empty"),
    (
        "repo without a slash",
        "L2: [justaname]\n",
        "L2[0]: 'justaname' is not an owner/name repository",
    ),
    ("repo with two slashes", "L2: [a/b/c]\n", "L2[0]: 'a/b/c' is not an owner/name repository"),
    ("unknown event", "L2:\n  - a/b:\n      events: [push]\n", "unknown event(s) ['push']"),
    (
        "duplicate event",
        "L2:\n  - a/b:\n      events: [nightly, nightly]\n",
        "L2[0] (a/b): event(s) listed twice: nightly",
    ),
    (
        "empty events",
        "L2:\n  - a/b:\n      events: []\n",
        "L2[0] (a/b): events must be a non-empty list of pull_request, nightly",
    ),
    (
        "events not a list",
        "L2:\n  - a/b:\n      events: nightly\n",
        "events must be a non-empty list",
    ),
    (
        "unknown key in an entry",
        "L2:\n  - a/b:\n      oncall: x\n",
        "L2[0] (a/b): unknown key(s) oncall (an entry takes events, oncalls)",
    ),
    (
        "unknown key in an L3 entry",
        "L3:\n  npu:\n    a/b: {level: L4}\n",
        "L3.npu.a/b (a/b): unknown key(s) level",
    ),
    (
        "two repos in one mapping entry",
        "L2:\n  - a/b: x\n    c/d: y\n",
        "L2[0]: a mapping entry must have exactly one repo key, got 2",
    ),
    ("null entry", "L2:\n  -\n", "L2[0]: must be a repo name or a one-key mapping, got null"),
    ("level not a list", "L1: a/b\n", "L1 must be a list of repos, got a string"),
    ("device not a mapping", "L3:\n  npu: [a/b]\n", "L3.npu must be a mapping of repos"),
    ("root not a mapping", "- a/b\n", "the file must be a mapping of levels, got a list"),
    ("a key twice in one mapping", "L1: [a/b]\nL1: [c/d]\n", "key 'L1' appears twice"),
    ("not YAML", "L1: [a/b\n", "not valid YAML at line 2"),
]
