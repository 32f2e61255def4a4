"""Upstream webhooks at the edge: size, signature, JSON, upstream pin, routing (contract §1).

Everything here is a pure function of the request: raw HTTP in, a typed `UpstreamEvent` or a
`WebhookRefused` (status, code, detail) out. Nothing is written before `parse` has succeeded.
"""

import fnmatch
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from crcr_site.errors import Refused
from crcr_site.text import storable, stored_text
from crcr_site.upstream import ciflow_pr_number


class WebhookRefused(Refused):
    """A webhook refused at the edge (nothing was written)."""


class Route(Enum):
    DISPATCH = "dispatch"
    PING = "ping"
    LABEL = "label"  # a ciflow/crcr/<device> label: that device's L3 check runs
    RERUN = "rerun"  # a crcr check run or suite re-run from the upstream PR
    IGNORE = "not handled"


# (event, action) -> what happens; None matches any action.
ROUTES: dict[tuple[str, str | None], Route] = {
    ("ping", None): Route.PING,
    ("pull_request", "opened"): Route.DISPATCH,
    ("pull_request", "reopened"): Route.DISPATCH,
    ("pull_request", "synchronize"): Route.DISPATCH,
    ("pull_request", "closed"): Route.DISPATCH,
    ("push", None): Route.DISPATCH,
    ("pull_request", "labeled"): Route.LABEL,
    ("check_run", "rerequested"): Route.RERUN,
    ("check_run", "requested_action"): Route.RERUN,  # our "Re-run failed jobs" button
    ("check_suite", "rerequested"): Route.RERUN,
}


def route_for(event: str, action: str | None) -> Route:
    return ROUTES.get((event, action)) or ROUTES.get((event, None)) or Route.IGNORE


def is_handled(event: str, action: str | None) -> bool:
    """Whether a delivery of this event does something here (lost ones are asked for again)."""
    return route_for(event, action) not in (Route.PING, Route.IGNORE)


def signature_is_valid(body: bytes, header: str, secret: str) -> bool:
    """`X-Hub-Signature-256` check: HMAC-SHA256 of the raw body, compared in constant time."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


@dataclass(frozen=True)
class UpstreamEvent:
    delivery_id: str
    event: str
    action: str
    repo: str
    pr_number: int
    head_sha: str
    ref: str
    title: str
    author: str
    body: str  # the raw webhook body, verbatim
    payload: dict[str, Any]
    default_branch: str = ""  # the upstream's, as the webhook's repository names it


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _event(delivery_id: str, event: str, text: str, payload: dict[str, Any]) -> UpstreamEvent:
    pr = _obj(payload.get("pull_request"))
    head, user = _obj(pr.get("head")), _obj(pr.get("user"))
    number = pr.get("number", payload.get("number", 0))
    title, author = _text(pr.get("title")), _text(user.get("login"))
    if event == "push":  # a ciflow tag push names its PR: refs/tags/ciflow/<name>/<N>
        number = ciflow_pr_number(payload.get("ref"))
        commit = _obj(payload.get("head_commit"))
        committer = _obj(commit.get("author"))
        title = _text(commit.get("message")).split("\n", 1)[0]  # the pushed head's title
        author = _text(committer.get("username")) or _text(committer.get("name"))
    return UpstreamEvent(
        delivery_id=delivery_id,
        event=event,
        action=stored_text(_text(payload.get("action"))[:40]),
        repo=stored_text(_text(_obj(payload.get("repository")).get("full_name"))),
        pr_number=number if isinstance(number, int) and 0 < number < 2**31 else 0,
        head_sha=stored_text((_text(head.get("sha")) or _text(payload.get("after")))[:64]),
        ref=stored_text((_text(payload.get("ref")) or _text(head.get("ref")))[:255]),
        title=stored_text(title[:1024]),
        author=stored_text(author[:100]),
        body=text,
        payload=payload,
        default_branch=stored_text(_text(_obj(payload.get("repository")).get("default_branch"))),
    )


def event_of(delivery_id: str, event: str, body: str) -> UpstreamEvent:
    """A recorded delivery's body as the event it was, under another delivery id (a
    re-dispatch: relay/redispatch.py)."""
    return _event(delivery_id, event, body, json.loads(body))


@dataclass(frozen=True)
class Parsed:
    route: Route
    event: UpstreamEvent | None = None
    reason: str = ""


def parse(
    *,
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    upstream_repo: str,
    push_refs: list[str],
) -> Parsed:
    """Check a webhook in the contract's order; raise WebhookRefused or say what to do."""
    signature = headers.get("X-Hub-Signature-256", "")
    if not secret:
        raise WebhookRefused(503, "not_configured", "GITHUB_WEBHOOK_SECRET is not set")
    if not signature:
        raise WebhookRefused(400, "signature_missing", "X-Hub-Signature-256 is required")
    if not signature_is_valid(body, signature, secret):
        raise WebhookRefused(401, "signature_invalid", "X-Hub-Signature-256 does not match")
    try:
        text = body.decode("utf-8")  # GitHub sends UTF-8; so does every webhook we accept
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WebhookRefused(400, "invalid_json", "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRefused(400, "invalid_json", "the body is not a JSON object")
    event = headers.get("X-GitHub-Event", "")
    action = payload.get("action") if isinstance(payload.get("action"), str) else None
    route = route_for(event, action)
    if route is Route.PING:
        return Parsed(Route.PING)
    repository = payload.get("repository")
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(full_name, str) or full_name.casefold() != upstream_repo.casefold():
        return Parsed(Route.IGNORE, reason=f"not the upstream repository {upstream_repo}")
    if route is Route.IGNORE:
        return Parsed(route, reason=f"{event}.{action or '-'} is {route.value}")
    if event == "push" and push_refs:
        ref = payload.get("ref")
        if not isinstance(ref, str) or not any(fnmatch.fnmatchcase(ref, p) for p in push_refs):
            return Parsed(Route.IGNORE, reason=f"push to {ref} is not in CRCR_PUSH_REFS")
    delivery_id = headers.get("X-GitHub-Delivery", "").strip()
    if not delivery_id or len(delivery_id) > 100 or not storable(delivery_id):
        raise WebhookRefused(400, "delivery_missing", "X-GitHub-Delivery is required")
    return Parsed(route, _event(delivery_id, event, text, payload))
