"""HTTP only: read the request, call one domain function, answer its Refused (any stage's)."""

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from crcr_site.errors import Dependency, Refused, Unavailable, json_methods, read_limited
from crcr_site.redis_connection import REDIS_ERRORS
from relay import callbacks, fanout, oidc
from relay.upstream_pr import check_runs, reruns
from relay.webhook import Route, parse


@csrf_exempt
@json_methods("POST")
def webhook(request: HttpRequest) -> JsonResponse:
    try:
        parsed = parse(
            headers=request.headers,
            body=read_limited(request, settings.CRCR_WEBHOOK_MAX_BYTES),
            secret=settings.GITHUB_WEBHOOK_SECRET,
            upstream_repo=settings.CRCR_UPSTREAM_REPO,
            push_refs=settings.CRCR_PUSH_REFS,
        )
        if parsed.route is Route.PING:
            return JsonResponse({"ok": True, "pong": True})
        if parsed.event is None:
            return JsonResponse({"ok": True, "ignored": True, "reason": parsed.reason})
        try:
            if parsed.route is Route.LABEL:
                return JsonResponse(check_runs.on_labeled(parsed.event))
            if parsed.route is Route.RERUN:
                asked = reruns.on_webhook(parsed.event)
                return JsonResponse(asked.as_json(), status=202 if asked.queued else 200)
            summary = fanout.fan_out(parsed.event)
        except DatabaseError:
            # Nothing could be recorded: GitHub marks the delivery failed and our lost-webhook
            # job asks for it again once the database is back.
            raise Unavailable(
                Dependency.DATABASE,
                "the delivery could not be recorded",
                error="database_unavailable",
            ) from None
    except Refused as refused:
        return refused.answer()
    status = 202 if summary.queued else 200
    return JsonResponse(summary.as_json(), status=status)


@csrf_exempt
@json_methods("POST")
def callback(request: HttpRequest) -> JsonResponse:
    authorization = request.headers.get("Authorization", "")
    peer = request.META.get("REMOTE_ADDR") or None
    try:
        body = read_limited(request, settings.CRCR_CALLBACK_MAX_BYTES)
        identity = oidc.verify(authorization)
    except Refused as refused:  # the body cannot be read, or the caller is not proven
        callbacks.refused_unverified(
            refused.status,
            refused.error,
            refused.detail,
            authorization=authorization,
            remote_addr=peer,
        )
        return refused.answer()
    except REDIS_ERRORS:
        return _unavailable(Dependency.REDIS, "RedisError")
    try:
        return JsonResponse(callbacks.handle(identity, body, peer))
    except Refused as refused:
        return refused.answer()
    except REDIS_ERRORS:
        return _unavailable(Dependency.REDIS, "RedisError")
    except DatabaseError:
        return _unavailable(Dependency.DATABASE, "DatabaseError")


def _unavailable(dependency: Dependency, what: str) -> JsonResponse:
    # Fail closed: nothing was recorded, the state is as it was; the client may retry.
    return Unavailable(dependency, f"try again shortly ({what})").answer()
