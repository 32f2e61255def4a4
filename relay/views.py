"""HTTP only: read the request, call one domain function, map its errors to statuses."""

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError

from crcr_site.errors import BodyRefused, json_error, json_methods, read_limited
from hud.records import BadRecord
from relay import callbacks, fanout, oidc
from relay.webhook import Route, WebhookRefused, parse

RETRY_AFTER = 5  # seconds a caller should wait when a store is down


@csrf_exempt
@json_methods("POST")
def webhook(request: HttpRequest) -> JsonResponse:
    try:
        body = read_limited(request, settings.CRCR_WEBHOOK_MAX_BYTES)
    except BodyRefused as refused:
        return refused.answer()
    try:
        parsed = parse(
            headers=request.headers,
            body=body,
            secret=settings.GITHUB_WEBHOOK_SECRET,
            upstream_repo=settings.CRCR_UPSTREAM_REPO,
            push_refs=settings.CRCR_PUSH_REFS,
        )
    except WebhookRefused as refused:
        return json_error(refused.status, refused.error, refused.detail)
    if parsed.route is Route.PING:
        return JsonResponse({"ok": True, "pong": True})
    if parsed.event is None:
        return JsonResponse({"ok": True, "ignored": True, "reason": parsed.reason})
    try:
        summary = fanout.fan_out(parsed.event)
    except DatabaseError:
        # Nothing could be recorded: GitHub marks the delivery failed and our lost-webhook
        # job asks for it again once the database is back.
        response = json_error(503, "database_unavailable", "the delivery could not be recorded")
        response["Retry-After"] = str(RETRY_AFTER)
        return response
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
    except (BodyRefused, oidc.OIDCRefused) as refused:
        callbacks.refused_unverified(
            refused.status,
            refused.error,
            refused.detail,
            authorization=authorization,
            remote_addr=peer,
        )
        return json_error(refused.status, refused.error, refused.detail)
    except RedisError:
        return _unavailable("RedisError")
    try:
        answer = callbacks.handle(identity, body, peer)
    except BadRecord as bad:
        return json_error(400, "invalid_body", str(bad))
    except callbacks.Refused as refused:
        response = json_error(refused.status, refused.error, refused.detail)
        if refused.retry_after:
            response["Retry-After"] = str(refused.retry_after)
        return response
    except (RedisError, callbacks.Unavailable, DatabaseError) as exc:
        return _unavailable(type(exc).__name__)
    return JsonResponse(answer)


def _unavailable(what: str) -> JsonResponse:
    # Fail closed: nothing was recorded, the state is as it was; the client may retry.
    response = json_error(503, "unavailable", f"try again shortly ({what})")
    response["Retry-After"] = str(RETRY_AFTER)
    return response
