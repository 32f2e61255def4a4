"""Before the tests: do PostgreSQL and redis-server answer, are curl and Chromium there? Say
exactly what is missing, once, instead of a run that ends in errors (scripts/provision installs
all of them where it may; `make test PROVISION=true` skips it and comes straight here)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.chromium import CHROMIUM  # the one path the browser tests drive


def main() -> int:
    problems = []
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        problems.append(f"DATABASE_URL must point at PostgreSQL for the tests, got {url!r}")
    else:
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as exc:
            problems.append(
                f"PostgreSQL does not answer at {url}: {str(exc).strip()}\n"
                "  start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main "
                "start) or run .ci/run, which installs and starts it"
            )
    server = shutil.which("redis-server")
    if server is None:
        problems.append("redis-server is not installed (apt-get install redis-server)")
    else:
        subprocess.run([server, "--version"], check=True, capture_output=True)
    if shutil.which("curl") is None:
        problems.append("curl is not installed (apt-get install curl): the downstream reporter")
    if not Path(CHROMIUM).is_file():
        problems.append(
            f"{CHROMIUM} is missing (apt-get install chromium): the browser tests drive it; "
            "`make test-fast` runs everything else"
        )
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
