"""Fresh processes on a fresh machine's environment, for the tests that need one."""

import os
import subprocess

from tests.paths import PYTHON, ROOT


def bare_env(tmp_path, **extra: str) -> dict[str, str]:
    """A fresh machine's environment: nothing CRCR-specific set, an empty SQLite file."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CRCR_", "DJANGO_", "HUD_", "GITHUB_", "REDIS_", "DATABASE_"))
    }
    return env | {"DATABASE_URL": f"sqlite:///{tmp_path / 'crcr.sqlite3'}"} | extra


def run_on_sqlite(tmp_path, script: str) -> str:
    """Run a Python snippet in a fresh process on an empty SQLite file; its standard output."""
    result = subprocess.run(
        [PYTHON, "-c", script],
        cwd=ROOT,
        env=bare_env(tmp_path, DJANGO_SETTINGS_MODULE="crcr_site.settings"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
