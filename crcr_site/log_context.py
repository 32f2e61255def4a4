"""What every log line of a request or task says about what it is working on.

`bind(delivery_id=..., repo=..., job=...)` sets fields for the rest of the current context
(a request, a task, a thread started with `carried`); `ContextFilter` puts them on every log
record, where the JSON formatter (LOG_FORMAT=json) writes them as fields and the plain one
leaves them out. `RequestContext` (middleware) starts each request with its request id:
the caller's `X-Request-ID` when it is a plain token, else a new one, answered in the same
header; a GitHub webhook's `X-GitHub-Delivery` is its delivery id from the first line.

Context variables follow the code into functions, not into other threads: a thread pool
runs what it is given through `carried`, so that a fan-out's sends log the delivery they send.
"""

import contextvars
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from django.http import HttpRequest, HttpResponse

_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "crcr_log", default=MappingProxyType({})
)
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,100}")


def bind(**fields: object) -> None:
    """Add these fields (None: leave out) to the current context's log lines."""
    _context.set({**_context.get(), **{k: str(v) for k, v in fields.items() if v is not None}})


def current() -> dict[str, str]:
    return dict(_context.get())


def carried[**P, T](function: Callable[P, T]) -> Callable[P, T]:
    """`function`, to run in another thread with this context's fields."""
    copied = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return copied.run(function, *args, **kwargs)

    return run


class ContextFilter(logging.Filter):
    """Every record gets the fields bound where it was logged (the JSON formatter writes a
    record's extra attributes as fields; the plain format names none of them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            setattr(record, name, value)
        return True


class RequestContext:
    """Middleware: each request starts with only its own fields."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex
        delivery = request.headers.get("X-GitHub-Delivery", "")
        fields: dict[str, Any] = {"request_id": request_id}
        if _TOKEN.fullmatch(delivery):
            fields["delivery_id"] = delivery
        token = _context.set({k: str(v) for k, v in fields.items()})
        try:
            response = self.get_response(request)
        finally:
            _context.reset(token)
        response["X-Request-ID"] = request_id
        return response
