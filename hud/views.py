from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from allowlist.entry import CAPABILITIES, Capabilities, Entry, Level
from allowlist.lookup import snapshot


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
