"""GET /healthz: can this process reach its database and Redis? For load balancers and humans."""

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from redis.exceptions import RedisError

from crcr_site.errors import json_methods
from crcr_site.redis_connection import get_redis


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


def _redis_ok() -> bool:
    try:
        return bool(get_redis().ping())
    except RedisError:
        return False


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
