"""Every benchmark script starts: it imports what it needs without Django set up (the scripts
run outside the app) and answers --help. A module-level import of a model in something a
script imports broke every benchmark that imported it, silently, until someone ran one."""

import os
import subprocess
import sys

import pytest

from tests.paths import ROOT

SCRIPTS = sorted(path for path in (ROOT / "bench").glob("*.py") if path.name not in ("harness.py",))


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.name for path in SCRIPTS])
def test_the_script_starts(script):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}  # as a shell's
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
