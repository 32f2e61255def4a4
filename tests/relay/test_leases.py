"""The lease mechanism (relay/leases.py) on the real database, through the HUD's outbox and a
dispatch: the two models that use it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from relay.leases import backoff
from relay.models import Delivery, Dispatch, HudForward

pytestmark = pytest.mark.django_db

LEASE = timedelta(seconds=60)


def outbox(n: int, **values) -> list[int]:
    now = timezone.now()
    rows = [HudForward(envelope={"n": i}, next_attempt_at=now, **values) for i in range(n)]
    return [row.pk for row in HudForward.objects.bulk_create(rows)]


def claim(owner: str, n: int = 10) -> list[HudForward]:
    return HudForward.objects.claim_due(owner=owner, n=n, lease=LEASE, order=("pk",))


def test_a_claim_by_one_owner_excludes_another():
    ids = outbox(3)

    first = claim("a", n=2)
    second = claim("b")

    assert [row.pk for row in first] == ids[:2]
    assert [row.pk for row in second] == ids[2:]
    assert sorted(HudForward.objects.values_list("lease_owner", "attempts")) == [
        ("a", 1),
        ("a", 1),
        ("b", 1),
    ]


def test_rows_not_yet_due_or_finished_are_not_claimed():
    outbox(1, status="sent")
    outbox(1, status="failed")
    [later] = outbox(1)
    HudForward.objects.filter(pk=later).update(next_attempt_at=timezone.now() + LEASE)

    assert claim("a") == []


def test_a_claim_scoped_by_the_queryset_takes_only_its_rows():
    ids = outbox(3)

    taken = HudForward.objects.filter(pk=ids[1]).claim_due(owner="a", n=10, lease=LEASE)

    assert [row.pk for row in taken] == [ids[1]]
    assert HudForward.objects.filter(lease_owner="").count() == 2


def test_an_expired_lease_is_claimed_again():
    outbox(1)
    [stale] = claim("a")
    HudForward.objects.update(lease_until=timezone.now())

    [fresh] = claim("b")

    assert (fresh.pk, fresh.lease_owner, fresh.attempts) == (stale.pk, "b", 2)


def test_an_outcome_recorded_by_a_stale_owner_is_ignored():
    outbox(1)
    [stale] = claim("a")
    HudForward.objects.update(lease_until=timezone.now())  # a's lease ran out mid-send
    assert len(claim("b")) == 1

    late_failure = stale.fail("late rejection")
    late_retry = stale.retry_later("late timeout", now=timezone.now())

    row = HudForward.objects.get()
    assert (late_failure, late_retry) == (False, False)
    assert (row.status, row.lease_owner, row.last_error) == ("pending", "b", "")
    assert stale.status == "pending"  # the instance shows what was recorded: nothing


def test_a_success_is_recorded_whoever_holds_the_lease():
    outbox(1)
    [stale] = claim("a")
    HudForward.objects.update(lease_until=timezone.now())
    [fresh] = claim("b")

    HudForward.objects.filter(pk=stale.pk).mark_sent(now=timezone.now())
    fresh.fail("b's answer came second")

    row = HudForward.objects.get()
    assert (row.status, row.lease_owner, row.lease_until, row.last_error) == ("sent", "", None, "")
    assert row.sent_at is not None


def test_a_retry_is_due_after_the_backoff_and_released(settings):
    settings.CRCR_RETRY_FIRST, settings.CRCR_RETRY_CAP = 10.0, 60.0
    outbox(1)
    [row] = claim("a")
    now = timezone.now()

    assert row.retry_later("HTTP 503", now=now, retry_after=30.0)

    stored = HudForward.objects.get()
    assert (stored.status, stored.lease_owner, stored.lease_until) == ("pending", "", None)
    assert stored.last_error == "HTTP 503"
    assert now + timedelta(seconds=30) <= stored.next_attempt_at <= now + timedelta(seconds=60)
    assert claim("b") == []  # not due yet


def test_a_row_waiting_past_the_give_up_time_fails_with_the_reason():
    outbox(1)
    HudForward.objects.update(created_at=timezone.now() - timedelta(hours=25))
    [row] = claim("a")

    row.retry_later("HTTP 503", now=timezone.now())

    stored = HudForward.objects.get()
    assert stored.status == "failed"
    assert stored.last_error == "gave up after 86400 s: HTTP 503"


def test_a_dispatch_given_up_keeps_no_next_attempt():
    delivery = Delivery.objects.create(delivery_id="d-1", event="push", upstream_repo="o/r")
    long_ago = timezone.now() - timedelta(hours=25)
    Dispatch.objects.create(
        delivery=delivery, repo="o/d", repo_key="o/d", level="L1", next_attempt_at=timezone.now()
    )
    Dispatch.objects.update(pending_since=long_ago)
    [row] = Dispatch.objects.claim_due(owner="a", n=1, lease=LEASE)

    row.retry_later("HTTP 502", now=timezone.now())

    stored = Dispatch.objects.get()
    assert (stored.status, stored.next_attempt_at) == ("failed", None)


def test_hand_back_releases_the_rows_without_counting_an_attempt():
    outbox(2)
    claim("a")

    HudForward.objects.all().hand_back(owner="a")

    assert list(HudForward.objects.values_list("lease_owner", "lease_until", "attempts")) == [
        ("", None, 0),
        ("", None, 0),
    ]


def test_backoff_is_capped_and_honours_retry_after(settings):
    settings.CRCR_RETRY_FIRST, settings.CRCR_RETRY_CAP = 1.0, 4.0

    first = [backoff(1) for _ in range(200)]
    late = [backoff(30) for _ in range(200)]
    asked = [backoff(30, retry_after=120.0) for _ in range(200)]

    assert all(timedelta(0) <= delay <= timedelta(seconds=1) for delay in first)
    assert all(delay <= timedelta(seconds=4) for delay in late)
    assert max(late) > timedelta(seconds=1)  # it did double past the first ceiling
    assert all(delay >= timedelta(seconds=120) for delay in asked)
