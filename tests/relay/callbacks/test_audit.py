"""The audit of decisions, and its bounded rate for strangers (relay/callbacks/audit.py)."""

import time

import pytest

from relay.models import CallbackAudit
from tests.relay.callbacks.support import token_for
from tests.relay.support import post_callback, reporter_body

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis_cluster]


def test_refusals_before_identity_are_audited_at_a_bounded_rate(client, actions, settings):
    settings.CRCR_AUDIT_UNVERIFIED_PER_MIN = 3
    expired = token_for(actions, exp=int(time.time()) - 3600)

    answers = [post_callback(client, {"x": 1}, expired).status_code for _ in range(5)]

    assert answers == [401] * 5
    rows = CallbackAudit.objects.all()
    assert len(rows) == 3
    assert {(r.verified, r.repo, r.issuer, r.reason) for r in rows} == {
        (False, "org-b/l3", actions.url, "token_invalid")  # what the token claimed, unverified
    }


def test_refusals_before_identity_are_only_logged_while_redis_is_down(client, actions, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.REDIS_CLUSTER_NODES = ()  # (a cluster's client would start from these instead)

    response = post_callback(client, {"x": 1}, "not-a-jwt")

    assert response.status_code == 401
    assert not CallbackAudit.objects.exists()


def test_callbacks_from_outside_the_allowlist_are_audited_at_a_bounded_rate(
    client, actions, dispatched, settings
):
    settings.CRCR_AUDIT_UNVERIFIED_PER_MIN = 2

    answers = [
        post_callback(
            client, reporter_body(dispatched, "in_progress"), token_for(actions, repo="any/one")
        ).json()["status"]
        for _ in range(4)
    ]

    assert answers == ["ignored"] * 4
    assert CallbackAudit.objects.filter(decision="ignored").count() == 2
