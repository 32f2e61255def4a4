"""HUD records at the edge: the callback's `workflow` object and the `{trusted, untrusted}`
envelope, parsed once into typed values (contract sections 2 and 3).

`null` means absent everywhere. Ids may come as strings or numbers and are kept as strings.
Required fields that are missing or malformed raise `BadRecord` (a 400); a malformed optional
field is dropped and noted in `Workflow.dropped`, never a 400. Untrusted text is kept verbatim;
it is escaped wherever it is shown.
"""

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from allowlist.yamlfile import REPO_RE
from crcr_site.text import storable, stored_text
from crcr_site.upstream import ciflow_pr_number

NAME_CAP = 255
ID_CAP = 100
URL_CAP = 2000
MAX_FAILED_TESTS = 50
MESSAGE_CAP = 500
VERDICT_CAP = 16 * 1024
VERDICT_CATEGORIES = {"infra", "flaky", "regression", "upstream", "downstream", "unknown"}
VERDICT_CONFIDENCES = {"low", "medium", "high"}
# Every integer a record stores fits the columns of every backend (PostgreSQL's integer, a
# signed 32-bit value); a larger one is refused, never wrapped or truncated.
INT_MAX = 2**31 - 1
# Reported times outside these years are not plausible CI times, and some are not even
# representable in UTC or by every backend: dropped as malformed.
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


class BadRecord(ValueError):
    def __init__(self, field_name: str, detail: str) -> None:
        super().__init__(f"{field_name}: {detail}")
        self.field = field_name


def _absent(value: object) -> bool:
    return value is None


def text(value: object, name: str, *, cap: int) -> str | None:
    """A string field (numbers allowed for ids); None when absent."""
    if _absent(value):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRecord(name, "must be a string")
    result = str(value)
    if len(result) > cap:
        raise BadRecord(name, f"is longer than {cap} characters")
    if not storable(result):
        raise BadRecord(name, "must not contain NUL or lone surrogates")
    return result


def required_text(value: object, name: str, *, cap: int) -> str:
    result = text(value, name, cap=cap)
    if result is None:
        raise BadRecord(name, "is required")
    if not result.strip():
        raise BadRecord(name, "must not be empty")
    return result


# The common case, decided without urlsplit (a PR page asks thousands of times): http(s), a
# host of letters, digits, dots and dashes, an optional port, then printable ASCII with no
# '@' anywhere. Whatever it matches, urlsplit reads as safe too (tests/hud/test_records.py);
# anything else is asked of urlsplit.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:[/?#][!-?A-~]*)?")


def safe_url(value: str | None) -> bool:
    """A plain http(s) URL without credentials: the only kind ever shown as a link."""
    if not value:
        return False
    if _PLAIN_URL.fullmatch(value):
        return True
    parts = urlsplit(value)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.username or parts.password)
    )


def _time(value: object) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("not an ISO 8601 time")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("not representable in UTC") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"outside {EARLIEST.year}-{LATEST.year - 1}")
    return utc


def _too_large(value: object) -> bool:
    """An integer over INT_MAX (orjson reads integers of 2**64 and more as floats)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value > INT_MAX


def _count(value: object, name: str) -> int | None:
    if _absent(value):
        return None
    if _too_large(value):
        raise BadRecord(name, f"is larger than {INT_MAX}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("not a count")
    return value


def _tests(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ValueError("not an object")
    counts = {
        k: _count(value.get(k), f"workflow.test_results.{k}")
        for k in ("passed", "failed", "skipped", "total")
    }
    known = {k: v for k, v in counts.items() if v is not None}
    if "total" not in known:
        known["total"] = sum(known.get(k, 0) for k in ("passed", "failed", "skipped"))
        if known["total"] > INT_MAX:
            raise BadRecord("workflow.test_results.total", f"is larger than {INT_MAX}")
    return known


def _failed_tests(value: object) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise ValueError("not a list")
    detail = []
    for item in value[:MAX_FAILED_TESTS]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError("each entry needs a name")
        message = item.get("message")
        detail.append(
            {
                "name": stored_text(item["name"][: NAME_CAP * 4]),
                "message": stored_text(message[:MESSAGE_CAP]) if isinstance(message, str) else "",
            }
        )
    return detail


def _verdict(value: object) -> dict[str, Any]:
    """Advisory triage data: fixed categories and confidences, capped text, safe links only."""
    if not isinstance(value, dict) or len(json.dumps(value)) > VERDICT_CAP:
        raise ValueError("not an object under 16 KB")
    if value.get("category") not in VERDICT_CATEGORIES:
        raise ValueError("unknown category")
    if value.get("confidence") not in VERDICT_CONFIDENCES:
        raise ValueError("unknown confidence")
    summary = value.get("summary", "")
    links = value.get("links", [])
    if not isinstance(summary, str) or not isinstance(links, list):
        raise ValueError("summary must be text, links a list")
    if not all(isinstance(link, str) and safe_url(link) for link in links):
        raise ValueError("links must be plain http(s) URLs")
    if not all(storable(link) for link in links):
        raise ValueError("links must be plain http(s) URLs")
    return {
        "category": value["category"],
        "confidence": value["confidence"],
        "summary": stored_text(summary[:4000]),
        "links": links[:20],
    }


OPTIONAL = {
    "started_at": _time,
    "completed_at": _time,
    "test_results": _tests,
    "failed_tests_detail": _failed_tests,
    "triage_verdict": _verdict,
}


@dataclass
class Workflow:
    status: str
    name: str
    run_id: str
    run_attempt: int = 1
    job_name: str | None = None
    check_run_id: str | None = None
    conclusion: str | None = None
    url: str | None = None
    artifact_url: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    test_results: dict[str, int] | None = None
    failed_tests_detail: list[dict[str, str]] | None = None
    triage_verdict: dict[str, Any] | None = None
    dropped: list[str] = field(default_factory=list)

    def require_key(self) -> tuple[str, str]:
        """(job_name, check_run_id): what a record needs besides the workflow's name."""
        if not self.job_name:
            raise BadRecord("workflow.job_name", "is required")
        if not self.check_run_id:
            raise BadRecord("workflow.check_run_id", "is required")
        return self.job_name, self.check_run_id


def parse_workflow(raw: object) -> Workflow:
    if not isinstance(raw, dict):
        raise BadRecord("workflow", "must be an object")
    workflow = Workflow(
        status=required_text(raw.get("status"), "workflow.status", cap=20),
        name=required_text(raw.get("name"), "workflow.name", cap=NAME_CAP),
        run_id=required_text(raw.get("run_id"), "workflow.run_id", cap=ID_CAP),
        job_name=text(raw.get("job_name"), "workflow.job_name", cap=NAME_CAP),
        check_run_id=text(raw.get("check_run_id"), "workflow.check_run_id", cap=ID_CAP),
    )
    workflow.run_attempt = _optional(workflow, "run_attempt", raw.get("run_attempt"), _attempt) or 1
    workflow.conclusion = _optional(workflow, "conclusion", raw.get("conclusion"), _conclusion)
    workflow.url = _optional(workflow, "url", raw.get("url"), _url)
    workflow.artifact_url = _optional(workflow, "artifact_url", raw.get("artifact_url"), _url)
    for name_, parse in OPTIONAL.items():
        setattr(workflow, name_, _optional(workflow, name_, raw.get(name_), parse))
    return workflow


def _optional(workflow: Workflow, name: str, value: object, parse: Any) -> Any:
    """A parsed optional field; dropped (noted) when malformed, but a value no backend can
    hold faithfully (BadRecord: an integer out of range) is refused."""
    if _absent(value):
        return None
    try:
        return parse(value)
    except BadRecord:
        raise
    except (ValueError, TypeError) as exc:
        workflow.dropped.append(f"workflow.{name}: {exc}")
        return None


def _attempt(value: object) -> int:
    if _too_large(value):
        raise BadRecord("workflow.run_attempt", f"is larger than {INT_MAX}")
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit()):
            raise ValueError("not a positive number")
        if len(value) > len(str(INT_MAX)):
            raise BadRecord("workflow.run_attempt", f"is larger than {INT_MAX}")
    number = int(value) if isinstance(value, str | int) and not isinstance(value, bool) else 0
    if number < 1:
        raise ValueError("not a positive number")
    return number


def _conclusion(value: object) -> str:
    if not isinstance(value, str) or len(value) > 30 or not storable(value):
        raise ValueError("not a conclusion")
    return value


def _url(value: object) -> str:
    if not isinstance(value, str) or len(value) > URL_CAP or not storable(value):
        raise ValueError("not a URL under 2000 characters")
    return value


def _dig(value: object, *path: str) -> object:
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _metric(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise BadRecord(f"trusted.ci_metrics.{name}", "must be a non-negative number")
    if not math.isfinite(float(value)):
        raise BadRecord(f"trusted.ci_metrics.{name}", "must be a finite number")
    return float(value)


@dataclass(frozen=True)
class Envelope:
    """`{trusted, untrusted}` as another relay (PyTorch's) sends it to POST /api/crcr/results."""

    verified_repo: str
    level: str | None
    queue_time: float | None
    execution_time: float | None
    delivery_id: str
    event_type: str
    workflow: Workflow
    job_name: str
    check_run_id: str
    upstream_repo: str | None
    pr_number: int
    head_sha: str


def parse_envelope(raw: object) -> Envelope:
    if not isinstance(raw, dict) or not isinstance(raw.get("trusted"), dict):
        raise BadRecord("trusted", "is required")
    trusted = raw["trusted"]
    repo = required_text(trusted.get("verified_repo"), "trusted.verified_repo", cap=140)
    if not REPO_RE.fullmatch(repo):  # the allowlist's own rule: the HUD links every repo it stores
        raise BadRecord("trusted.verified_repo", "must be owner/name")
    level = text(trusted.get("downstream_repo_level"), "trusted.downstream_repo_level", cap=2)
    metrics = trusted.get("ci_metrics") if isinstance(trusted.get("ci_metrics"), dict) else {}
    body = _dig(raw, "untrusted", "callback_payload")
    if not isinstance(body, dict):
        raise BadRecord("untrusted.callback_payload", "is required")
    workflow = parse_workflow(body.get("workflow"))
    job_name, check_run_id = workflow.require_key()
    delivery_id = required_text(body.get("delivery_id"), "delivery_id", cap=ID_CAP)
    payload = body.get("payload") if isinstance(body.get("payload"), dict) else {}
    number = _dig(payload, "pull_request", "number") or ciflow_pr_number(_dig(payload, "ref"))
    head = (
        _dig(payload, "pull_request", "head", "sha")
        or _dig(payload, "head_sha")
        or _dig(payload, "after")
        or delivery_id
    )
    upstream = _dig(payload, "repository", "full_name")
    return Envelope(
        verified_repo=repo,
        level=level if level in ("L1", "L2", "L3", "L4") else None,
        queue_time=_metric(metrics.get("queue_time"), "queue_time"),
        execution_time=_metric(metrics.get("execution_time"), "execution_time"),
        delivery_id=delivery_id,
        event_type=text(body.get("event_type"), "event_type", cap=20) or "pull_request",
        workflow=workflow,
        job_name=job_name,
        check_run_id=check_run_id,
        upstream_repo=upstream[:140] if isinstance(upstream, str) else None,
        pr_number=number if isinstance(number, int) and 0 < number < 2**31 else 0,
        head_sha=str(head)[:100],
    )
