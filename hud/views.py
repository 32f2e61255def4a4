import hmac
import json
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from allowlist.entry import CAPABILITIES, Capabilities, Entry, Level
from allowlist.lookup import snapshot
from crcr_site.errors import json_error, json_methods, read_limited
from hud.ingest import ingest
from hud.records import BadRecord, parse_envelope


@dataclass(frozen=True)
class LevelSection:
    level: Level
    capabilities: Capabilities
    entries: list[Entry]


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """/crcr: the downstream repos in force, one section per level, most trusted first."""
    entries = snapshot().entries
    sections = [
        LevelSection(level, CAPABILITIES[level], [e for e in entries if e.level == level])
        for level in sorted(Level, key=lambda level: -level.rank)
    ]
    return render(request, "hud/index.html", {"sections": sections, "total": len(entries)})


INGEST_MAX_BYTES = 2 * 1024 * 1024


@csrf_exempt
@json_methods("POST")
def ingest_results(request: HttpRequest) -> JsonResponse:
    """POST /api/crcr/results: `{trusted, untrusted}` envelopes, `x-hud-internal-bot` only."""
    expected = settings.HUD_BOT_TOKEN
    given = request.headers.get("x-hud-internal-bot", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return json_error(401, "unauthorized", "x-hud-internal-bot is missing or wrong")
    body = read_limited(request, INGEST_MAX_BYTES)
    if body is None:
        return json_error(413, "too_large", "the body is over 2 MB")
    try:
        envelope = parse_envelope(json.loads(body))
    except (ValueError, RecursionError) as exc:
        detail = str(exc) if isinstance(exc, BadRecord) else "the body is not JSON"
        return json_error(400, "invalid_body", detail)
    record = ingest(envelope)
    return JsonResponse({"ok": True, "status": record.status})
