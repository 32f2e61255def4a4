"""Stage 1: the raw body, parsed once into a typed `Callback` (contract §2).

Nothing past this module reads the body as a dict, but for the untrusted copy the HUD keeps
verbatim (`Callback.body`) and the echoed upstream payload a self-report may name its upstream
commit by (`Callback.echo_text`).
"""

from dataclasses import dataclass
from typing import Any

import orjson

from crcr_site.errors import Refused
from hud.records import BadRecord, Workflow, parse_workflow, required_text, text
from hud.storage import RecordKey

# Which events answer a dispatch of ours (and go through the state machine), and which are a
# downstream's own report (nightly, periodic: written once, no dispatch to answer).
DISPATCH, SELF = "dispatch", "self"
PATHS = {"pull_request": DISPATCH, "push": DISPATCH, "nightly": SELF, "periodic": SELF}
STATUSES = ("in_progress", "completed")


@dataclass(frozen=True)
class Callback:
    delivery_id: str
    event_type: str
    workflow: Workflow
    job_name: str
    check_run_id: str
    crcr_token: str | None
    body: dict[str, Any]  # verbatim, kept as the untrusted part

    @property
    def path(self) -> str:
        return PATHS[self.event_type]

    @property
    def status(self) -> str:
        return self.workflow.status

    def key(self, repo_key: str) -> RecordKey:
        """The HUD record this callback writes for the (verified) repo."""
        return RecordKey(
            repo_key, self.delivery_id, self.workflow.name, self.job_name, self.check_run_id
        )

    def echo_text(self, *path: str) -> str | None:
        """A non-empty string at `path` in the echoed upstream payload, if there is one."""
        value: Any = self.body.get("payload")
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value if isinstance(value, str) and value else None


def parse(raw: bytes) -> Callback:
    """The callback body, validated; a 400 `invalid_body` Refused names the field."""
    try:
        return _parse(raw)
    except BadRecord as bad:
        raise Refused(400, "invalid_body", str(bad)) from None


def _parse(raw: bytes) -> Callback:
    try:  # I-JSON (RFC 7493): UTF-8, no NaN, no lone surrogates, at most 1,024 levels deep
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRecord("body", "is not JSON") from None
    if not isinstance(body, dict):
        raise BadRecord("body", "must be a JSON object")
    delivery_id = required_text(body.get("delivery_id"), "delivery_id", cap=100)
    event_type = text(body.get("event_type"), "event_type", cap=20) or "pull_request"
    if event_type not in PATHS:
        raise BadRecord("event_type", f"must be one of {', '.join(PATHS)}")
    workflow = parse_workflow(body.get("workflow"))
    if workflow.status not in STATUSES:
        raise BadRecord("workflow.status", "must be in_progress or completed")
    job_name, check_run_id = workflow.require_key()
    crcr = body.get("crcr")
    token = crcr.get("token") if isinstance(crcr, dict) else None
    return Callback(
        delivery_id=delivery_id,
        event_type=event_type,
        workflow=workflow,
        job_name=job_name,
        check_run_id=check_run_id,
        crcr_token=token if isinstance(token, str) else None,
        body=body,
    )
