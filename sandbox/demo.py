"""What `make demo` runs beside the relay: a simulated GitHub, simulated upstream traffic, and
simulated downstream runners calling back (sandbox/downstream.py).

The simulated GitHub (sandbox/github.py) plays both sides of GitHub: the API the relay
calls (installations, tokens, dispatches) and the sender of upstream webhooks. Every few
seconds it opens or pushes to a pull request on the upstream repository, signed with the demo's
webhook secret, so the admin's deliveries and dispatches fill up as they would in production.
"""

import json
import logging
import random
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from django.conf import settings

from sandbox.github import SimulatedGitHub, generate_app_key
from sandbox.oidc import SimulatedIssuer

logger = logging.getLogger(__name__)

APP_ID = "100001"
PR_FIXTURE = Path(settings.BASE_DIR) / "tests" / "fixtures" / "github" / "webhooks"
TITLES = [
    "Fix dtype promotion in torch.where",
    "Add a fused kernel for layer_norm backward",
    "Speed up the dispatcher's fallthrough path",
    "[inductor] Tune the tile size heuristics",
    "Deprecate an old serialization format",
]


def start_issuer() -> tuple[SimulatedIssuer, dict[str, str]]:
    """A simulated GitHub Actions OIDC issuer, and the environment that makes the relay trust it."""
    issuer = SimulatedIssuer("github").start()
    anchors = {issuer.url: {"jwks": issuer.jwks_url, "kind": "github"}}
    return issuer, {"CRCR_OIDC_ISSUERS": json.dumps(anchors)}


def start_github() -> tuple[SimulatedGitHub, dict[str, str]]:
    """A running simulated GitHub, and the environment that points the relay at it."""
    key = generate_app_key()
    github = SimulatedGitHub(app_id=APP_ID, private_key=key, latency=0.05).start()
    github.webhook_secret = secrets.token_hex(16)
    env = {
        "GITHUB_API_URL": github.url,
        "GITHUB_WEB_URL": github.url,  # the HUD's PR links open its PR pages
        "GITHUB_APP_ID": APP_ID,
        "GITHUB_APP_PRIVATE_KEY": key,
        "GITHUB_WEBHOOK_SECRET": github.webhook_secret,
    }
    return github, env


def pull_request_event(
    number: int, action: str, *, labels: tuple[str, ...] = (), head: str = ""
) -> dict[str, Any]:
    """An upstream pull_request webhook, from a recorded GitHub payload."""
    payload: dict[str, Any] = json.loads((PR_FIXTURE / "pull_request.opened.json").read_text())
    payload["action"] = action
    payload["number"] = number
    payload["repository"]["full_name"] = settings.CRCR_UPSTREAM_REPO
    pr = payload["pull_request"]
    pr["number"] = number
    pr["title"] = random.choice(TITLES)  # noqa: S311 (made-up data)
    pr["head"]["sha"] = head or secrets.token_hex(20)
    pr["labels"] = [{"name": name} for name in labels]
    if action == "labeled" and labels:
        payload["label"] = {"name": labels[-1]}
    return payload


def crcr_label() -> str:
    """The label that asks for an L3 device's check runs (the first device allowlisted)."""
    from allowlist import lookup

    devices = sorted({entry.device for entry in lookup.snapshot().entries if entry.device})
    return f"ciflow/crcr/{devices[0]}" if devices else ""


@dataclass
class Pull:
    number: int
    head: str = ""
    labels: tuple[str, ...] = ()
    label_later: bool = False


def wait_until_up(url: str, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            stop.wait(0.2)


def upstream_traffic(github: SimulatedGitHub, stop: threading.Event, every: float) -> None:
    """Open pull requests and push to them until `stop` is set."""
    wait_until_up(github.webhook_url.replace("/github/webhook", "/healthz"), stop)
    label = crcr_label()
    open_prs: list[Pull] = []
    next_number = random.randint(150000, 160000)  # noqa: S311
    while not stop.wait(every if open_prs else 0):
        if open_prs and random.random() < 0.6:  # noqa: S311
            pull = random.choice(open_prs)  # noqa: S311
            action = "synchronize"
            if pull.label_later and label:  # labelled during its run: its jobs are backfilled
                pull.labels, pull.label_later, action = (label,), False, "labeled"
            else:
                pull.head = secrets.token_hex(20)
        else:
            # A third of the PRs carry the L3 label from the start, a third get it later.
            pull = Pull(next_number, secrets.token_hex(20))
            pull.labels = (label,) if label and next_number % 3 == 0 else ()
            pull.label_later = next_number % 3 == 1
            action = "opened"
            next_number += 1
            open_prs = [*open_prs[-4:], pull]
        event = pull_request_event(pull.number, action, labels=pull.labels, head=pull.head)
        response = github.send_webhook("pull_request", event)
        logger.info(
            "upstream PR #%s %s -> %s",
            pull.number,
            action,
            response.status_code if response is not None else "no answer",
        )
