"""`make test`'s check before the run (scripts/check_services.py) names what a machine lacks."""

import os
import subprocess

import pytest

from tests.paths import PYTHON, ROOT

CHECK = str(ROOT / "scripts" / "check_services.py")


@pytest.fixture
def postgres_url() -> str:
    """The server the tests run on, as `make test` gives it (TEST_DATABASE_URL)."""
    return os.environ["DATABASE_URL"]


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_this_machine_has_everything_the_tests_need(postgres_url):
    result = check({"DATABASE_URL": postgres_url, "PATH": "/usr/local/bin:/usr/bin:/bin"})

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_what_is_missing_is_named_each_with_how_to_install_it(postgres_url):
    result = check({"DATABASE_URL": postgres_url, "PATH": "/nonexistent"})

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "make test: redis-server is not installed (apt-get install redis-server)",
        "make test: curl is not installed (apt-get install curl): the downstream reporter",
    ]


def test_a_database_that_is_not_postgresql_is_refused_by_name():
    result = check({"DATABASE_URL": "sqlite:///x.sqlite3", "PATH": "/usr/local/bin:/usr/bin:/bin"})

    assert result.returncode == 1
    assert "DATABASE_URL must point at PostgreSQL for the tests" in result.stderr
