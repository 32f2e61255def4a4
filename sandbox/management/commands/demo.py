"""`make demo`: set up the embedded mode and run the relay and HUD on http://127.0.0.1:8000.

Without REDIS_URL it serves one fakeredis on a free loopback port and gives its URL to every
process it starts, so they share one Redis as production processes would. Without a GitHub App
configured it starts a simulated GitHub and sends simulated upstream traffic
(sandbox/demo.py). It runs the web server and `manage.py worker` as child processes.
"""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from fakeredis import TcpFakeServer

from sandbox import demo, downstream, history

DEMO_USER = ("admin", "admin")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run CRCR in embedded mode with the sample allowlist (for trying it out)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--clickhouse",
            action="store_true",
            help="keep the HUD in ClickHouse (chdb under var/, inside the web process)",
        )
        parser.add_argument(
            "--traffic-every",
            type=float,
            default=10.0,
            help="seconds between simulated upstream webhooks (0: none)",
        )
        parser.add_argument(
            "--time-scale",
            type=float,
            default=60.0,
            help="how many times faster than real CI the simulated jobs queue and run, the "
            "history's included (1: real time; the HUD says so otherwise); it applies to a "
            "history loaded now, not to one already there",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        env = dict(os.environ)
        redis_server = None
        if settings.REDIS_URL is None:
            redis_server = TcpFakeServer(("127.0.0.1", 0))  # the OS picks a free port
            threading.Thread(target=redis_server.serve_forever, daemon=True).start()
            port = redis_server.server_address[1]
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            self.stdout.write(f"fakeredis serving {env['REDIS_URL']}")
        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("allowlist_sync", settings.CRCR_ALLOWLIST, stdout=self.stdout)
        scale = options["time_scale"]
        if scale <= 0:
            raise CommandError("--time-scale must be above 0")
        if scale != 1:
            env["CRCR_HUD_NOTICE"] = (
                f"Demo: simulated CI runs {scale:g} times faster than real CI, so every "
                f"duration here is {scale:g} times shorter than real CI's (a job shown as "
                f"30s stands for {30 * scale / 60:g} minutes)."
            )
        loaded = history.load(time_scale=scale)
        if loaded:
            self.stdout.write(f"Loaded a two-week history of {loaded} job results for the HUD.")
        if options["clickhouse"]:
            self._use_clickhouse(env)
        self._ensure_demo_user()
        url = f"http://127.0.0.1:{options['port']}"
        github = issuer = None
        if not settings.GITHUB_APP_ID:
            github, github_env = demo.start_github()
            issuer, issuer_env = demo.start_issuer()
            env.update(github_env | issuer_env)
            github.webhook_url = f"{url}/github/webhook"
            env.setdefault("CRCR_PUBLIC_URL", url)
            env.setdefault("CRCR_CHECK_SETTLE", "20")  # L4 aggregates conclude while you watch
            self.stdout.write(f"simulated GitHub serving {github.url}, OIDC issuer {issuer.url}")
        self.stdout.write(self.style.SUCCESS(f"\nCRCR: {url}/crcr   admin: {url}/admin/"))
        # Said here once instead of by runserver on every start: production runs gunicorn.
        self.stdout.write("Served by Django's runserver; production: docs/operations.md")
        env["DJANGO_RUNSERVER_HIDE_WARNING"] = "true"
        manage = [sys.executable, "manage.py"]
        children = [
            subprocess.Popen(
                [*manage, "runserver", f"127.0.0.1:{options['port']}", "--noreload"],
                cwd=settings.BASE_DIR,
                env=env,
            ),
            subprocess.Popen([*manage, "worker"], cwd=settings.BASE_DIR, env=env),
        ]
        stop = threading.Event()
        if github is not None and issuer is not None and options["traffic_every"] > 0:
            threading.Thread(
                target=demo.upstream_traffic,
                args=(github, stop, options["traffic_every"]),
                daemon=True,
            ).start()
            threading.Thread(
                target=downstream.runners,
                args=(github, issuer, f"{url}/github/callback", stop),
                kwargs={"time_scale": scale},
                daemon=True,
            ).start()
        signal.signal(signal.SIGTERM, _stop)  # stopped by a supervisor: take the children along
        try:
            children[0].wait()
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            for child in children:
                child.terminate()
            for child in children:
                child.wait(timeout=10)
            if github is not None:
                github.stop()
            if issuer is not None:
                issuer.stop()
            if redis_server is not None:
                redis_server.shutdown()

    def _use_clickhouse(self, env: dict[str, str]) -> None:
        """HUD_BACKEND=clickhouse on chdb for the children. chdb belongs to one process at a
        time, so the schema and the history are written by short-lived commands that exit
        before the web server (the one process that then owns it) starts."""
        database = settings.DATABASES["default"]
        if database["ENGINE"] == "django.db.backends.sqlite3":  # next to the embedded database
            path = Path(str(database["NAME"])).with_name("crcr-chdb")
        else:
            path = Path(settings.BASE_DIR) / "var" / "demo-chdb"
        path.parent.mkdir(exist_ok=True)
        url = settings.HUD_CLICKHOUSE_URL or f"chdb://{path}"
        env |= {"HUD_BACKEND": "clickhouse", "HUD_CLICKHOUSE_URL": url}
        manage = [sys.executable, "manage.py"]
        for command in (
            ["hud_clickhouse_migrate"],
            ["hud_backfill", "--from", "orm", "--to", "clickhouse"],
        ):
            subprocess.run([*manage, *command], cwd=settings.BASE_DIR, env=env, check=True)
        self.stdout.write(f"HUD on ClickHouse ({url})")

    def _ensure_demo_user(self) -> None:
        if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
            self.stdout.write("Not the embedded database: no demo user created.")
            return
        name, password = DEMO_USER
        user_model = get_user_model()
        if not user_model.objects.filter(username=name).exists():
            user_model.objects.create_superuser(name, password=password)
        self.stdout.write(f"Demo admin login: {name} / {password} (embedded database only)")
