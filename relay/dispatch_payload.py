"""The `client_payload` of a dispatch, and the guard that keeps it inside GitHub's limits.

GitHub takes at most 10 top-level keys and under 64 KB in `client_payload`. We send four
(`event_type`, `delivery_id`, `payload`, `crcr`) and aim for MAX_BYTES as `json.dumps` writes it,
which is also how the request body is written. The upstream webhook body goes as it is whenever
it fits; otherwise it is slimmed in fixed steps, free text first, down to a skeleton that always
keeps the fields downstream workflows read (contract §1), and `crcr.truncated` says so.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_BYTES = 60_000
FREE_TEXT_KEYS = frozenset({"body", "message", "description"})


class PayloadTooLarge(Exception):
    pass


def _without_free_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: None if k in FREE_TEXT_KEYS and isinstance(v, str) else _without_free_text(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_free_text(item) for item in value]
    return value


def _pick(source: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(source, dict):
            return None
        source = source.get(key)
    return source


def _skeleton(payload: dict[str, Any]) -> dict[str, Any]:
    """Only what downstream workflows read (contract §1), plus a few small scalars."""
    slim: dict[str, Any] = {"repository": {"full_name": _pick(payload, "repository", "full_name")}}
    for key in ("action", "ref", "before", "after", "deleted", "created", "forced"):
        if key in payload:
            slim[key] = payload[key]
    if isinstance(payload.get("sender"), dict):
        slim["sender"] = {"login": _pick(payload, "sender", "login")}
    pr = payload.get("pull_request")
    if isinstance(pr, dict):
        slim["number"] = payload.get("number", pr.get("number"))
        slim["pull_request"] = {
            "number": pr.get("number"),
            "title": pr.get("title"),
            "state": pr.get("state"),
            "draft": pr.get("draft"),
            "merged": pr.get("merged"),
            "html_url": pr.get("html_url"),
            "user": {"login": _pick(pr, "user", "login")},
            "head": {
                "sha": _pick(pr, "head", "sha"),
                "ref": _pick(pr, "head", "ref"),
                "repo": {"full_name": _pick(pr, "head", "repo", "full_name")},
            },
            "base": {"sha": _pick(pr, "base", "sha"), "ref": _pick(pr, "base", "ref")},
            "labels": [
                {"name": label.get("name")}
                for label in pr.get("labels") or []
                if isinstance(label, dict)
            ],
        }
    return slim


# Tried in order; the first that fits is sent. All are deterministic.
SLIMMING: tuple[Callable[[dict[str, Any]], dict[str, Any]], ...] = (
    lambda payload: payload,
    _without_free_text,
    _skeleton,
)


# Room kept for the `crcr` object; a dispatch token is a few hundred bytes.
CRCR_ROOM = 1024


@dataclass(frozen=True)
class Prepared:
    """One delivery's client_payload, serialised once; only `crcr.token` differs per repo."""

    head: str  # '{"event_type": ..., "delivery_id": ..., "payload": <payload>'
    truncated: bool

    def client_payload_json(self, token: str) -> str:
        """Exactly what json.dumps writes for the dict; checked against GitHub's limit."""
        crcr = json.dumps({"token": token, "truncated": self.truncated})
        text = f'{self.head}, "crcr": {crcr}}}'
        if len(text.encode()) > MAX_BYTES:
            raise PayloadTooLarge(f"the client_payload is over {MAX_BYTES} bytes")
        return text

    def request_body(self, event_type: str, token: str) -> str:
        """The body of POST /repos/{repo}/dispatches."""
        return (
            f'{{"event_type": {json.dumps(event_type)}, '
            f'"client_payload": {self.client_payload_json(token)}}}'
        )


def prepare(*, event_type: str, delivery_id: str, payload: dict[str, Any]) -> Prepared:
    """Serialise the payload once, slimmed in SLIMMING's order until it fits."""
    for step, slim in enumerate(SLIMMING):
        head = (
            f'{{"event_type": {json.dumps(event_type)}, '
            f'"delivery_id": {json.dumps(delivery_id)}, "payload": {json.dumps(slim(payload))}'
        )
        if len(head.encode()) + CRCR_ROOM <= MAX_BYTES:
            return Prepared(head, truncated=step > 0)
    raise PayloadTooLarge(f"even the slimmed payload is over {MAX_BYTES} bytes")
