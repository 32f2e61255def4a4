"""The kit's live relay, and running the kit's reporter as a CI job does against it."""

import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from kit.report import crcr_report
from sandbox.oidc import SimulatedIssuer
from tests.stack import Stack, upstream_event

REPO = "org/backend"  # a GitHub Actions downstream
BUILDKITE_REPO = "org/bk-backend"  # the one the Buildkite pipeline reports for


@dataclass
class Relay:
    stack: Stack
    actions: SimulatedIssuer
    buildkite: SimulatedIssuer

    @property
    def url(self) -> str:
        return self.stack.server.url

    @property
    def callback_url(self) -> str:
        return f"{self.url}/github/callback/"

    def dispatch(self, repo: str = REPO) -> dict[str, Any]:
        """A new upstream PR, dispatched to every downstream; the client_payload `repo` got."""
        guid = str(uuid.uuid4())
        number = uuid.UUID(guid).int % 100000 + 1
        answer = self.stack.send_event(upstream_event(number=number), guid)
        assert answer is not None
        assert answer.status_code == 200, answer.text
        return self.stack.client_payloads(guid)[repo]

    def token(self, repo: str = REPO, **claims: Any) -> str:
        return self.actions.mint(repo=repo, **claims)

    def records(self, delivery_id: str) -> list[dict[str, Any]]:
        """The HUD records of a delivery, as stored, by job name."""
        with psycopg.connect(self.stack.env["DATABASE_URL"], row_factory=dict_row) as db:
            return db.execute(
                "SELECT * FROM hud_jobrecord WHERE delivery_id = %s ORDER BY job_name",
                [delivery_id],
            ).fetchall()


RUN_ID = "7001"


@dataclass
class Ran:
    code: int
    out: str
    outputs: dict[str, str]


def job_env(relay: Relay, client_payload: dict[str, Any] | None, outputs: Path, **extra: str):
    """What a GitHub Actions job of REPO hands the reporter, run RUN_ID, attempt 1."""
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(outputs),
        "CALLBACK_URL": relay.callback_url,
        "CLIENT_PAYLOAD": json.dumps(client_payload) if client_payload is not None else "null",
        "OIDC_TOKEN": relay.token(run_id=RUN_ID),
        "WORKFLOW_NAME": "Backend CI",
        "WORKFLOW_URL": f"https://github.com/{REPO}/actions/runs/{RUN_ID}",
        "RUN_ID": RUN_ID,
        "RUN_ATTEMPT": "1",
    } | extra


def report(relay: Relay, client_payload, tmp_path: Path, *argv: str, **env: str) -> Ran:
    """The reporter's main(), in this process, with `argv` and the job's environment."""
    outputs = tmp_path / f"outputs-{len(list(tmp_path.glob('outputs-*')))}"
    out = io.StringIO()
    code = crcr_report.main(list(argv), job_env(relay, client_payload, outputs, **env), out)
    lines = outputs.read_text().splitlines() if outputs.exists() else []
    return Ran(code, out.getvalue(), dict(line.split("=", 1) for line in lines))
