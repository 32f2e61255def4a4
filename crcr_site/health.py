"""GET /healthz: can this process reach its database and Redis? For load balancers and humans."""

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse

from crcr_site import redis_connection
from crcr_site.errors import json_methods


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


def _redis_ok() -> bool:
    try:
        redis_connection.ping()
    except redis_connection.REDIS_ERRORS:
        return False
    return True


@json_methods("GET", "HEAD")
def healthz(request: HttpRequest) -> JsonResponse:
    parts = {"database": _database_ok(), "redis": _redis_ok()}
    body = {"ok": all(parts.values())} | {
        name: "ok" if ok else "unreachable" for name, ok in parts.items()
    }
    return JsonResponse(body, status=200 if body["ok"] else 503)


@json_methods("GET", "HEAD")
def livez(request: HttpRequest) -> JsonResponse:
    """GET /livez: the process answers (no dependencies checked; for liveness probes)."""
    return JsonResponse({"ok": True})
