"""HTTP only: read the request, call one domain function, answer its Refused (any stage's)."""

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from crcr_site import metrics
from crcr_site.errors import Dependency, Refused, Unavailable, json_methods, read_limited
from crcr_site.redis_connection import REDIS_ERRORS
from relay import callbacks, fanout, oidc
from relay.upstream_pr import check_runs, reruns
from relay.webhook import ROUTES, Route, parse

EVENTS = {event for event, _ in ROUTES}  # crcr_webhooks_total's event label: known, or other


@csrf_exempt
@json_methods("POST")
def webhook(request: HttpRequest) -> JsonResponse:
    response, outcome = _webhook(request)
    event = request.headers.get("X-GitHub-Event", "")
    metrics.count(metrics.WEBHOOKS, event=event if event in EVENTS else "other", outcome=outcome)
    return response


def _webhook(request: HttpRequest) -> tuple[JsonResponse, str]:
    """The answer, and its outcome for crcr_webhooks_total."""
    try:
        parsed = parse(
            headers=request.headers,
            body=read_limited(request, settings.CRCR_WEBHOOK_MAX_BYTES),
            secret=settings.GITHUB_WEBHOOK_SECRET,
            upstream_repo=settings.CRCR_UPSTREAM_REPO,
            push_refs=settings.CRCR_PUSH_REFS,
        )
        if parsed.route is Route.PING:
            return JsonResponse({"ok": True, "pong": True}), "ping"
        if parsed.event is None:
            return JsonResponse({"ok": True, "ignored": True, "reason": parsed.reason}), "ignored"
        try:
            if parsed.route is Route.LABEL:
                return JsonResponse(check_runs.on_labeled(parsed.event)), "labeled"
            if parsed.route is Route.RERUN:
                asked = reruns.on_webhook(parsed.event)
                status = 202 if asked.queued else 200
                return JsonResponse(asked.as_json(), status=status), "rerun"
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
        return refused.answer(), refused.error
    if summary.queued:
        return JsonResponse(summary.as_json(), status=202), "queued"
    return JsonResponse(summary.as_json()), "dispatched"


@csrf_exempt
@json_methods("POST")
def callback(request: HttpRequest) -> JsonResponse:
    response, outcome, reason = _callback(request)
    metrics.count(metrics.CALLBACKS, outcome=outcome, reason=reason)
    if response.status_code == 429:
        metrics.count(metrics.RATE_LIMITED, scope=reason)
    return response


def _callback(request: HttpRequest) -> tuple[JsonResponse, str, str]:
    """The answer, and its outcome and reason for crcr_callbacks_total."""
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
        if isinstance(refused, oidc.OIDCRefused):
            metrics.count(metrics.OIDC_FAILURES, reason=refused.error)
        return refused.answer(), "refused", refused.error
    except REDIS_ERRORS:
        return _unavailable(Dependency.REDIS, "RedisError"), "unavailable", "redis"
    try:
        answer = callbacks.handle(identity, body, peer)
    except Refused as refused:
        return refused.answer(), "refused", refused.error
    except REDIS_ERRORS:
        return _unavailable(Dependency.REDIS, "RedisError"), "unavailable", "redis"
    except DatabaseError:
        return _unavailable(Dependency.DATABASE, "DatabaseError"), "unavailable", "database"
    seen = "already_recorded" if answer.get("already_recorded") else "recorded"
    return JsonResponse(answer), "accepted", f"{seen}:{answer.get('status', '')}"


def _unavailable(dependency: Dependency, what: str) -> JsonResponse:
    # Fail closed: nothing was recorded, the state is as it was; the client may retry.
    return Unavailable(dependency, f"try again shortly ({what})").answer()
