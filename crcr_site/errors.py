"""Error answers: JSON for the machine-facing paths, HTML for people.

The relay and API paths always answer `{"ok": false, "error": ..., "detail": ...}` (contract §1).
Every refusal anywhere in the product is a `Refused` (or a subclass naming its stage), turned
into that answer by `Refused.answer` and nowhere else; a dependency that is down is an
`Unavailable`, whose Retry-After comes from one policy per dependency (`RETRY_AFTER`).
"""

import functools
from collections.abc import Callable
from enum import StrEnum

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

MACHINE_PREFIXES = ("/github/", "/api/", "/healthz", "/livez", "/readyz", "/metrics")


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


class Refused(Exception):
    """A request refused: its status, a stable error code, a detail for people, and
    Retry-After (seconds) when the same request may succeed later."""

    def __init__(
        self, status: int, error: str, detail: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.retry_after = status, error, detail, retry_after

    def answer(self) -> JsonResponse:
        """The JSON error answer (contract §1), with Retry-After when there is one."""
        response = json_error(self.status, self.error, self.detail)
        if self.retry_after:
            response["Retry-After"] = str(self.retry_after)
        return response


class Dependency(StrEnum):
    DATABASE = "database"  # the relay's own records (deliveries, dispatches, callbacks)
    REDIS = "redis"  # the state machine, rate limits and caches
    RESULTS_STORE = "results store"  # the HUD's store, read by the pages and the ingest API


# How long a caller should wait when a dependency is down (Retry-After, seconds). The relay's
# callers are CI jobs and GitHub holding one result or delivery each: a short wait, and the
# fail-fast connection settings keep a retry cheap. The HUD's store serves dashboards and
# bulk ingest, which can wait longer than a typical store restart.
RETRY_AFTER = {Dependency.DATABASE: 5, Dependency.REDIS: 5, Dependency.RESULTS_STORE: 30}


class Unavailable(Refused):
    """A dependency is down: 503 with its Retry-After; nothing was recorded (fail closed),
    so the caller may send the same request again."""

    def __init__(self, dependency: Dependency, detail: str, *, error: str = "unavailable") -> None:
        super().__init__(503, error, detail, retry_after=RETRY_AFTER[dependency])
        self.dependency = dependency


class BodyRefused(Refused):
    """A request body that cannot be read: too large (413), or of unknown length (411)."""


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
