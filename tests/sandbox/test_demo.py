import re
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox import workload
from tests.crcr_site.support import bare_env
from tests.paths import PYTHON, ROOT
from tests.servers import free_port
from tests.waiting import wait_until


def up(url: str) -> bool:
    """Whether a server answers at `url`, whatever its status."""
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return False
    return True


def wait_for(url: str, seconds: float = 60) -> requests.Response:
    wait_until(lambda: up(url), timeout=seconds, interval=0.2)
    return requests.get(url, timeout=10)


def rows(database: Path, query: str) -> int:
    with sqlite3.connect(database) as db:
        (count,) = db.execute(query).fetchone()
    return int(count)


def wait_for_rows(database: Path, query: str, at_least: int, seconds: float = 30) -> None:
    """Simulated upstream traffic reaches the relay and is dispatched to the simulated GitHub."""
    wait_until(lambda: rows(database, query) >= at_least, timeout=seconds, interval=0.2)


def test_the_demo_serves_the_allowlist_admin_and_simulated_traffic_both_ways(tmp_path):
    port = free_port()
    demo = subprocess.Popen(
        [PYTHON, "manage.py", "demo", "--port", str(port), "--traffic-every", "1"],
        cwd=ROOT,
        env=bare_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        crcr = wait_for(f"http://127.0.0.1:{port}/crcr")
        assert crcr.status_code == 200
        assert "Demo: simulated CI runs 60 times faster than real CI" in crcr.text  # its time scale
        assert "pytorch/crcr-test" in crcr.text
        assert "example-org/gating-backend" in crcr.text
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()["redis"] == "ok"
        login = requests.get(f"http://127.0.0.1:{port}/admin/login/", timeout=5)
        assert login.status_code == 200
        wait_for_rows(
            tmp_path / "crcr.sqlite3",
            "SELECT count(*) FROM relay_dispatch WHERE status = 'sent'",
            at_least=11,
        )
        # A history is loaded, so every page has something to show.
        repo = requests.get(f"http://127.0.0.1:{port}/crcr/Ascend/pytorch", timeout=10)
        assert repo.status_code == 200
        assert 'class="matrix"' in repo.text
        pr = requests.get(f"http://127.0.0.1:{port}/api/crcr/prs/1000", timeout=10).json()
        assert len(pr["view"]["repos"]) >= 5
        # Simulated downstream runners call back: live results reach the HUD's records.
        wait_for_rows(
            tmp_path / "crcr.sqlite3",
            "SELECT count(*) FROM hud_jobrecord WHERE delivery_id NOT LIKE 'demo-%' "
            "AND delivery_id NOT LIKE 'nightly-%'",
            at_least=1,
            seconds=45,
        )
        # A live job ran as long as its repo's history says, on the demo's clock.
        database = tmp_path / "crcr.sqlite3"
        wait_for_rows(database, f"SELECT count(*) {LIVE} AND status = 'completed'", 1, 60)
        _ran_as_its_history_says(database)
        # The L4 repo's check runs reach the simulated upstream PR, which the HUD links to.
        sent = "FROM relay_checkrun WHERE status = 'sent' AND repo = 'example-org/gating-backend'"
        wait_for_rows(database, f"SELECT count(*) {sent} AND kind = 'job'", 1, seconds=45)
        number = rows(database, f"SELECT max(pr_number) {sent} AND kind = 'job'")
        hud_pr = requests.get(f"http://127.0.0.1:{port}/crcr/pr/{number}", timeout=10).text
        link = re.search(rf'href="(http://127\.0\.0\.1:\d+/[^"]+/pull/{number})"', hud_pr)
        assert link is not None, hud_pr
        upstream = requests.get(link.group(1), timeout=10)
        assert upstream.status_code == 200
        assert "crcr/example-org/gating-backend/" in upstream.text  # a job's
        assert ">crcr/example-org/gating-backend<" in upstream.text  # the aggregate
    finally:
        demo.send_signal(signal.SIGTERM)
        output, _ = demo.communicate(timeout=30)
    assert "fakeredis serving redis://127.0.0.1:" in output
    assert "Demo admin login: admin / admin" in output
    assert "Loaded a two-week history of" in output
    _started_quietly(output)
    # The web server did not outlive the demo.
    wait_until(lambda: not up(f"http://127.0.0.1:{port}/crcr"), timeout=2)


def _started_quietly(output: str) -> None:
    """No process the demo starts warns about what the demo expects: SQLite ignoring the
    covering indexes' extra columns (models.W040), a missing staticfiles/, runserver's
    development-server notice (said once, by the demo, instead)."""
    assert "System check identified some issues" not in output
    assert "W040" not in output
    assert "No directory at" not in output
    assert "This is a development server" not in output
    assert output.count("Served by Django's runserver; production: docs/operations.md") == 1


LIVE = "FROM hud_jobrecord WHERE delivery_id NOT LIKE 'demo-%' AND delivery_id NOT LIKE 'nightly-%'"


def _ran_as_its_history_says(database: Path) -> None:
    with sqlite3.connect(database) as db:
        found = db.execute(
            f"SELECT downstream_repo, level, conclusion, execution_time {LIVE} "
            "AND status = 'completed' AND conclusion != 'timed_out'"
        ).fetchall()
    for repo, level, conclusion, execution in found:
        shortest, longest = (t / 60 for t in workload.profile(repo, level).execution)
        # measured by the relay between two callbacks: a little later, never earlier
        assert shortest - 0.5 <= execution <= longest + 5, (repo, conclusion, execution)


def test_the_demo_can_keep_the_hud_in_clickhouse(tmp_path):
    port = free_port()
    env = bare_env(tmp_path)
    demo = subprocess.Popen(
        [PYTHON, "manage.py", "demo", "--port", str(port), "--traffic-every", "1", "--clickhouse"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for(f"http://127.0.0.1:{port}/crcr").status_code == 200
        repo = requests.get(f"http://127.0.0.1:{port}/crcr/Ascend/pytorch", timeout=10)
        assert 'class="matrix"' in repo.text
        # Live callbacks reach ClickHouse through the outbox: the job count keeps growing.
        first = _jobs(port)
        wait_until(lambda: _jobs(port) > first, timeout=45, interval=1)
    finally:
        demo.send_signal(signal.SIGTERM)
        output, _ = demo.communicate(timeout=30)
    assert re.search(r"copied [1-9][0-9]* records from orm to clickhouse", output)
    # The live results went to ClickHouse only: the ORM table holds the loaded history alone.
    with sqlite3.connect(tmp_path / "crcr.sqlite3") as db:
        (live,) = db.execute(
            "SELECT count(*) FROM hud_jobrecord WHERE delivery_id NOT LIKE 'demo-%' "
            "AND delivery_id NOT LIKE 'nightly-%'"
        ).fetchone()
    assert live == 0
    assert f"HUD on ClickHouse (chdb://{tmp_path / 'crcr-chdb'})" in output


def _jobs(port: int) -> int:
    summary = requests.get(f"http://127.0.0.1:{port}/api/crcr/summary?days=1", timeout=10).json()
    return sum(line["summary"]["counts"]["total"] for b in summary["blocks"] for line in b["lines"])


SHOTS = ROOT / "var" / "screenshots"
# What the README shows, as a maintainer opening the demo sees it: (file, path, what it holds).
DEMO_PAGES = (
    ("demo-crcr", "/crcr", "table.summary"),
    ("demo-repo", "/crcr/Ascend/pytorch", "table.matrix"),
    ("demo-prs", "/crcr/prs", ".strip"),
    ("demo-pr", None, "table.pr"),  # the newest PR the live traffic reached
)


@pytest.mark.browser
def test_the_demo_in_chromium_for_the_readme(tmp_path):
    """The README's screenshots (`make screenshots` copies them to docs/screenshots/): the demo
    with live traffic, each page whole and without a script or CSP error."""
    from tests.chromium import launched

    port = free_port()
    demo = subprocess.Popen(
        [PYTHON, "manage.py", "demo", "--port", str(port), "--traffic-every", "1"],
        cwd=ROOT, env=bare_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/crcr")
        database = tmp_path / "crcr.sqlite3"
        live = (
            "FROM hud_jobrecord WHERE delivery_id NOT LIKE 'demo-%' AND event_type = 'pull_request'"
        )
        wait_for_rows(database, f"SELECT count(*) {live}", at_least=1, seconds=60)
        newest = rows(database, f"SELECT max(pr_number) {live}")
        SHOTS.mkdir(parents=True, exist_ok=True)
        with launched() as browser:
            context = browser.new_context(viewport={"width": 1280, "height": 860})
            page = context.new_page()
            errors: list[str] = []

            def console(message: Any) -> None:
                if message.type == "error":
                    errors.append(message.text)

            page.on("console", console)
            page.on("pageerror", lambda e: errors.append(str(e)))
            for name, path, holds in DEMO_PAGES:
                page.goto(f"{base}{path or f'/crcr/pr/{newest}'}")
                assert page.locator(holds).count() >= 1, name
                page.screenshot(path=str(SHOTS / f"{name}.png"))
            context.close()
        assert errors == []
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=30)
