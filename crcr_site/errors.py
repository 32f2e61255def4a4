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


class BodyRefused(Exception):
    """A request body that cannot be read: too large (413), or of unknown length (411)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail

    def answer(self) -> JsonResponse:
        return json_error(self.status, self.error, self.detail)


def read_limited(request: HttpRequest, limit: int) -> bytes:
    """The raw body, at most `limit` bytes (declared or actual), else BodyRefused (413).

    A chunked body (`Transfer-Encoding: chunked`, no Content-Length) is read when the server
    hands it over whole (gunicorn says so with `wsgi.input_terminated`); where it cannot (some
    other server), 411: Django would read it as empty, and an empty body is not what was sent."""
    too_large = BodyRefused(413, "too_large", f"the body is over {limit} bytes")
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        if not request.META.get("wsgi.input_terminated"):
            raise BodyRefused(411, "length_required", "send the body with a Content-Length")
        body: bytes = request.META["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise too_large
        return body
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise too_large
    body = request.read(limit + 1)
    if len(body) > limit:
        raise too_large
    return body
