"""Error pages: JSON for the machine-facing paths, HTML for people.

The relay and API paths always answer `{"ok": false, "error": ..., "detail": ...}` (contract §1).
"""

import functools
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

MACHINE_PREFIXES = ("/github/", "/api/", "/healthz", "/livez")


def json_error(status: int, error: str, detail: str) -> JsonResponse:
    return JsonResponse({"ok": False, "error": error, "detail": detail}, status=status)


def json_methods(
    *methods: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Like require_http_methods, but a wrong method gets the JSON error body and `Allow`."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if request.method not in methods:
                response = json_error(405, "method_not_allowed", f"use {', '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(MACHINE_PREFIXES)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _wants_json(request):
        return json_error(404, "not_found", f"no such path: {request.path}")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return json_error(500, "server_error", "internal error; it has been logged")
    return defaults.server_error(request)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _wants_json(request):
        return json_error(400, "bad_request", "the request could not be understood")
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _wants_json(request):
        return json_error(403, "forbidden", "not allowed")
    return defaults.permission_denied(request, exception)


def read_limited(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None when it is over `limit` (declared or actual): then answer 413."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body
