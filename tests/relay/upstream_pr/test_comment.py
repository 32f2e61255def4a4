"""The one sticky comment on an upstream PR (relay/upstream_pr/comment.py), written on the
simulated GitHub: callbacks go through the relay's HTTP endpoints, the worker's send goes to
GitHub over HTTP with the upstream installation's token, and what GitHub then holds is read
back from the simulator."""

import re
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from allowlist.models import DownstreamRepo
from relay.github import get_app
from relay.models import PullComment
from relay.upstream_pr import check_runs, comment
from tests.relay.support import post_callback, post_webhook, reporter_body, webhook_payload

pytestmark = pytest.mark.django_db(transaction=True)

UPSTREAM = "pytorch/pytorch"
PR = 2
L4, L3 = "org-c/l4", "org-b/l3"


@pytest.fixture
def opened(client, github, downstream, actions):
    """PR 2 opened and dispatched, its L4 repo's oncalls alice and bob, its L3 repo's
    npu-oncall; the client_payload each repo received."""
    for repo, oncalls in (("Org-C/L4", ["alice", "@bob"]), ("org-b/l3", ["npu-oncall"])):
        row = DownstreamRepo.objects.get(repo=repo)
        row.oncalls = oncalls
        row.save()
    post_webhook(client, "pull_request", webhook_payload("pull_request.opened"), delivery="guid-1")
    return {call.repo: call.body["client_payload"] for call in github.dispatches()}


def report(client, actions, payload, job, conclusion, *, repo=L4, attempt="1", **workflow):
    """A downstream job runs: in_progress, then completed; then the check-run worker's turn
    (which queues the comment for the L3 and L4 jobs it sends)."""
    key = {"job": job, "check_run_id": f"{job}-{attempt}", "run_attempt": attempt, **workflow}
    for body in (
        reporter_body(payload, "in_progress", **key),
        reporter_body(payload, "completed", conclusion=conclusion, **key),
    ):
        token = actions.mint(repo=repo, run_attempt=attempt)
        assert post_callback(client, body, token).status_code == 200
    check_runs.send_due()


def on_github(github):
    return github.comments_on(UPSTREAM, PR)


def sent_bodies(github):
    return [c.body["body"] for c in github.calls if c.route in ("comment_create", "comment_update")]


def mentions(body, handle):
    """@handle outside code spans: what GitHub notifies."""
    return len(re.findall(rf"(?<!\w)@{handle}\b", re.sub(r"`[^`]*`", "", body)))


def test_a_pr_that_was_never_red_gets_no_comment(client, actions, github, opened):
    report(client, actions, opened[L4], "build", "success")

    assert comment.send_due() == 0

    assert on_github(github) == []
    assert [c.route for c in github.calls if c.route.startswith("comment")] == []
    assert PullComment.objects.get().status == "sent"


def test_the_first_failure_creates_the_comment_and_later_ones_edit_it(
    client, actions, github, opened
):
    report(client, actions, opened[L4], "build", "success")
    report(client, actions, opened[L4], "test", "failure")

    assert comment.send_due() == 1

    [first] = on_github(github)
    assert first["body"].startswith(comment.MARKER)
    assert "1 repo failing" in first["body"]
    assert "`CI / test` `failure`" in first["body"]
    assert "`CI / build`" not in first["body"]
    assert "cc @alice @bob" in first["body"]
    assert "http://127.0.0.1:8000/crcr/pr/2" in first["body"]
    assert "http://127.0.0.1:8000/crcr/Org-C/L4?pr=2" in first["body"]
    assert "[run](https://github.com/org/repo/actions/runs/1111)" in first["body"]
    [create] = github.calls_to("comment_create", UPSTREAM)
    assert create.headers["authorization"].startswith("Bearer ghs_")  # the installation's
    assert create.path == f"/repos/{UPSTREAM}/issues/{PR}/comments"

    report(client, actions, opened[L4], "lint", "failure")
    assert comment.send_due() == 1

    [edited] = on_github(github)
    assert edited["id"] == first["id"]
    assert "`CI / test`" in edited["body"]
    assert "`CI / lint`" in edited["body"]
    assert "oncall `@alice` `@bob`" in edited["body"]
    assert [c.path for c in github.calls_to("comment_update")] == [
        f"/repos/{UPSTREAM}/issues/comments/{first['id']}"
    ]

    report(client, actions, opened[L4], "test", "success", attempt="2")
    report(client, actions, opened[L4], "lint", "success", attempt="2")
    assert comment.send_due() == 1

    [fixed] = on_github(github)
    assert fixed["id"] == first["id"]
    assert "all downstream checks pass on `ec26c3e57c`" in fixed["body"]
    assert len(github.calls_to("comment_create")) == 1
    assert [mentions(body, "alice") for body in sent_bodies(github)] == [1, 0, 0]
    row = PullComment.objects.get()
    assert (row.status, row.comment_id, row.mentioned) == ("sent", first["id"], [L4])


def test_nothing_is_sent_when_the_comment_would_not_change(client, actions, github, opened):
    report(client, actions, opened[L4], "test", "failure")
    comment.send_due()
    report(client, actions, opened[L4], "lint", "failure")
    comment.send_due()
    report(client, actions, opened[L4], "build", "success")

    assert comment.send_due() == 0

    assert len(sent_bodies(github)) == 2
    assert PullComment.objects.get().status == "sent"


def test_a_deleted_comment_is_written_again_and_oncalls_are_not_mentioned_twice(
    client, actions, github, opened
):
    report(client, actions, opened[L4], "test", "failure")
    comment.send_due()
    [first] = on_github(github)
    url = f"{github.url}/repos/{UPSTREAM}/issues/comments/{first['id']}"
    assert requests.delete(url, timeout=5).status_code == 401  # the simulator checks tokens
    app = get_app()
    token = app.installation_token(app.installation_id(UPSTREAM))
    deleted = requests.delete(url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert deleted.status_code == 204

    report(client, actions, opened[L4], "lint", "failure")
    assert comment.send_due() == 1

    [again] = on_github(github)
    assert again["id"] != first["id"]
    assert "`CI / test`" in again["body"]
    assert "`CI / lint`" in again["body"]
    assert mentions(again["body"], "alice") == 0
    assert [c.status for c in github.calls_to("comment_update")] == [404]
    assert len(github.calls_to("comment_create")) == 2
    assert PullComment.objects.get().comment_id == again["id"]


def test_a_comment_the_relay_lost_track_of_is_found_by_its_marker(client, actions, github, opened):
    """Its create was answered but the answer never recorded: the PR's comments (two pages
    here) are searched, and a human's comment quoting the marker is not taken for ours."""
    for n in range(120):
        github.add_comment(UPSTREAM, PR, f"comment {n}")
    github.add_comment(UPSTREAM, PR, f"{comment.MARKER} not the relay's")
    ours = github.add_comment(UPSTREAM, PR, f"{comment.MARKER}\nan older body", user_type="Bot")

    report(client, actions, opened[L4], "test", "failure")
    assert comment.send_due() == 1

    assert github.calls_to("comment_create") == []
    assert [c.path for c in github.calls_to("comment_update")] == [
        f"/repos/{UPSTREAM}/issues/comments/{ours}"
    ]
    assert [c.path.rsplit("page=", 1)[1] for c in github.calls_to("comments")] == ["1", "2"]
    bodies = {c["id"]: c["body"] for c in on_github(github)}
    assert "`CI / test`" in bodies[ours]
    assert PullComment.objects.get().comment_id == ours


def push(client, github, sha, *, ref="refs/heads/master"):
    """An upstream push, dispatched; the client_payload the L4 repo received."""
    payload = webhook_payload("push.payload") | {"ref": ref, "after": sha, "deleted": False}
    post_webhook(client, "push", payload, delivery=f"push-{sha}")
    sent = [c.body["client_payload"] for c in github.dispatches(L4)]
    return next(p for p in sent if p["delivery_id"] == f"push-{sha}")


def nightly(client, actions, sha, job, conclusion):
    body = {
        "event_type": "nightly",
        "delivery_id": sha,
        "payload": {"repository": {"full_name": UPSTREAM}, "head_sha": sha},
    }
    done = reporter_body(body, "completed", conclusion=conclusion, job=job, check_run_id=job)
    assert post_callback(client, done, actions.mint(repo=L4)).status_code == 200


def test_failures_already_on_main_are_told_apart_from_new_ones(client, actions, github, opened):
    """main is the default branch the webhook names ("master" here): its pushes and the
    nightly runs count, a push to another branch does not."""
    for sha, conclusion in (("0" * 40, "success"), ("1" * 40, "failure"), ("2" * 40, "failure")):
        report(client, actions, push(client, github, sha), "test", conclusion)
    report(client, actions, push(client, github, "3" * 40), "lint", "failure")
    report(client, actions, push(client, github, "4" * 40, ref="refs/heads/dev"), "docs", "failure")
    report(client, actions, push(client, github, "5" * 40), "flaky", "failure")
    report(client, actions, push(client, github, "6" * 40), "flaky", "success")
    nightly(client, actions, "7" * 40, "build", "timed_out")
    nightly(client, actions, "8" * 40, "lint", "success")

    for job in ("test", "lint", "docs", "flaky", "build"):
        report(client, actions, opened[L4], job, "failure")
    comment.send_due()

    [posted] = on_github(github)
    new, _, old = posted["body"].partition("Also failing on master:")
    assert "New failures:" in new
    assert [job for job in ("test", "lint", "docs", "flaky", "build") if f"/ {job}`" in old] == [
        "test",
        "build",
    ]
    assert "also failing on master since `1111111111`" in old
    assert "also failing on master since `7777777777`" in old
    assert all(f"/ {job}`" in new for job in ("lint", "docs", "flaky"))


def test_an_l3_repo_counts_only_once_the_pr_carries_its_device_label(
    client, actions, github, opened
):
    report(client, actions, opened[L3], "test", "failure", repo=L3)
    comment.send_due()
    assert on_github(github) == []

    labeled = webhook_payload("pull_request.labeled") | {"label": {"name": "ciflow/crcr/npu"}}
    post_webhook(client, "pull_request", labeled, delivery="guid-label")
    report(client, actions, opened[L3], "lint", "failure", repo=L3)
    comment.send_due()

    [posted] = on_github(github)
    assert "`org-b/l3`" in posted["body"]
    assert "cc @npu-oncall" in posted["body"]
    assert "`CI / test`" in posted["body"]
    assert "`CI / lint`" in posted["body"]


def test_updates_that_pile_up_are_sent_once_as_the_newest_state(client, actions, github, opened):
    for job in ("a", "b", "c"):
        report(client, actions, opened[L4], job, "failure")
    assert PullComment.objects.get().version == 3

    comment.send_due()

    [create] = github.calls_to("comment_create")
    assert all(f"`CI / {job}`" in create.body["body"] for job in ("a", "b", "c"))
    assert len(sent_bodies(github)) == 1


def test_an_update_made_while_the_comment_is_being_sent_is_sent_next(
    client, actions, github, opened
):
    report(client, actions, opened[L4], "a", "failure")

    def another_callback(call):  # as a callback in another process would, meanwhile
        if call.route == "comment_create":
            comment.queue(UPSTREAM, PR)
            connection.close()  # this thread's own connection

    github.observer = another_callback
    comment.send_due()

    row = PullComment.objects.get()
    assert (row.status, row.version, row.lease_owner) == ("pending", 2, "")
    github.observer = None
    assert comment.send_due() == 1
    assert PullComment.objects.get().status == "sent"
    writes = [c.route for c in github.calls if c.route in ("comment_create", "comment_update")]
    assert writes == ["comment_create", "comment_update"]


def test_github_failures_are_retried_without_a_second_comment(client, actions, github, opened):
    github.hang_seconds = 3.0
    github.fail("comment_create", "late", times=1)  # done, but its answer never comes
    report(client, actions, opened[L4], "a", "failure")

    assert comment.send_due() == 0
    row = PullComment.objects.get()
    assert (row.status, row.comment_id, row.attempts) == ("pending", None, 1)
    assert "timed out" in row.last_error

    github.fail("comments", "rate_limit", times=1, retry_after=30)
    PullComment.objects.filter(pk=row.pk).update(next_attempt_at=row.created_at)
    before = timezone.now()
    assert comment.send_due() == 0
    row.refresh_from_db()
    assert row.next_attempt_at >= before + timedelta(seconds=30)  # GitHub's Retry-After

    PullComment.objects.filter(pk=row.pk).update(next_attempt_at=row.created_at)
    assert comment.send_due() == 1

    [posted] = on_github(github)
    assert "`CI / a`" in posted["body"]
    assert len(github.calls_to("comment_create")) == 1
    assert PullComment.objects.get().comment_id == posted["id"]


def test_downstream_text_cannot_mention_link_or_break_out_of_the_comment(
    client, actions, github, opened
):
    job = "x` @mallory [click](https://evil.example) <!-- crcr:pr-comment -->"
    details = [{"name": "test_`a` @eve", "message": "boom"}]
    report(
        client,
        actions,
        opened[L4],
        job,
        "failure",
        url="javascript:alert(1)",
        failed_tests_detail=details,
    )

    comment.send_due()

    [posted] = on_github(github)
    body = posted["body"]
    assert mentions(body, "mallory") == 0
    assert mentions(body, "eve") == 0
    assert "`CI / x' @mallory [click](https://evil.example) <!-- crcr:pr-comment -->`" in body
    assert "javascript:" not in body
    assert body.count(comment.MARKER) == 2
    assert body.startswith(comment.MARKER)


def test_only_completed_pr_jobs_at_commenting_levels_queue_the_comment(
    client, actions, github, opened, settings
):
    l2 = next(p for repo, p in opened.items() if repo == "org-a/l2")
    report(client, actions, l2, "test", "failure", repo="org-a/l2")
    body = reporter_body(opened[L4], "in_progress", job="running", check_run_id="running")
    post_callback(client, body, actions.mint(repo=L4))
    assert PullComment.objects.count() == 0

    settings.CRCR_COMMENT_LEVELS = []
    report(client, actions, opened[L4], "off", "failure")
    assert PullComment.objects.count() == 0


def test_an_l4_job_queues_the_comment_through_its_check_run_off_the_callbacks_path(
    client, actions, github, opened
):
    report(client, actions, opened[L4], "warm", "success")
    body = reporter_body(opened[L4], "in_progress", job="a", check_run_id="a")
    assert post_callback(client, body, actions.mint(repo=L4)).status_code == 200
    done = reporter_body(opened[L4], "completed", conclusion="failure", job="a", check_run_id="a")

    with CaptureQueriesContext(connection) as queries:
        assert post_callback(client, done, actions.mint(repo=L4)).status_code == 200

    [write] = [query["sql"] for query in queries.captured_queries]
    assert "relay_checkrun" in write
    assert "relay_pullcomment" not in write  # (one row every job of the PR would wait on)
    assert PullComment.objects.get().version == 1
    check_runs.send_due()
    assert PullComment.objects.get().version == 2


def test_a_commenting_level_without_check_runs_queues_the_comment_in_the_callbacks_write(
    client, actions, github, opened, settings
):
    settings.CRCR_COMMENT_LEVELS = ["L2", "L3", "L4"]
    l2 = next(p for repo, p in opened.items() if repo == "org-a/l2")
    body = reporter_body(l2, "in_progress", job="a", check_run_id="a")
    assert post_callback(client, body, actions.mint(repo="org-a/l2")).status_code == 200
    done = reporter_body(l2, "completed", conclusion="failure", job="a", check_run_id="a")

    with CaptureQueriesContext(connection) as queries:
        assert post_callback(client, done, actions.mint(repo="org-a/l2")).status_code == 200

    [write] = [query["sql"] for query in queries.captured_queries]
    assert "relay_pullcomment" in write
    assert PullComment.objects.get().version == 1


def test_the_worker_sends_the_comment(client, actions, github, opened):
    from django.core.management import call_command

    report(client, actions, opened[L4], "test", "failure")

    call_command("worker", "--once")

    [posted] = on_github(github)
    assert "`CI / test`" in posted["body"]


def test_the_comment_reads_the_hud_through_its_store_clickhouse_too(
    on_chdb, client, actions, github, opened
):
    report(client, actions, push(client, github, "1" * 40), "test", "failure")
    report(client, actions, opened[L4], "test", "failure")
    report(client, actions, opened[L4], "lint", "failure")

    comment.send_due()

    [posted] = on_github(github)
    new, _, old = posted["body"].partition("Also failing on master:")
    assert "`CI / lint`" in new
    assert "`CI / test`" in old
    assert "since `1111111111`" in old


def test_the_admin_lists_the_pr_comments(admin_client, client, actions, github, opened):
    report(client, actions, opened[L4], "test", "failure")
    comment.send_due()

    response = admin_client.get("/admin/relay/pullcomment/")

    assert response.status_code == 200
    assert str(PullComment.objects.get().comment_id) in response.text


def test_a_newer_update_keeps_githubs_wait_and_brings_back_a_comment_given_up_on(
    client, actions, github, opened
):
    github.fail("comments", "rate_limit", times=1, retry_after=60)
    report(client, actions, opened[L4], "a", "failure")
    comment.send_due()
    waiting = PullComment.objects.get()

    report(client, actions, opened[L4], "b", "failure")

    row = PullComment.objects.get()
    assert (row.version, row.next_attempt_at) == (2, waiting.next_attempt_at)
    assert comment.send_due() == 0  # not before GitHub said

    github.fail("comment_create", "not_installed", times=1)  # refused: kept as failed
    PullComment.objects.filter(pk=row.pk).update(next_attempt_at=row.created_at)
    comment.send_due()
    assert PullComment.objects.get().status == "failed"

    report(client, actions, opened[L4], "c", "failure")
    row = PullComment.objects.get()
    assert (row.status, row.attempts, row.version) == ("pending", 0, 3)
    assert comment.send_due() == 1
    [posted] = on_github(github)
    assert all(f"`CI / {job}`" in posted["body"] for job in "abc")


def test_a_label_added_after_its_repo_is_red_brings_it_onto_the_comment(
    client, actions, github, opened
):
    report(client, actions, opened[L3], "test", "failure", repo=L3)
    comment.send_due()
    assert on_github(github) == []

    labeled = webhook_payload("pull_request.labeled") | {"label": {"name": "ciflow/crcr/npu"}}
    post_webhook(client, "pull_request", labeled, delivery="guid-label")
    comment.send_due()

    [posted] = on_github(github)
    assert "`CI / test`" in posted["body"]


def test_a_job_the_zombie_sweep_timed_out_turns_the_comment_red(
    client, actions, github, opened, settings
):
    from relay import zombies

    body = reporter_body(opened[L4], "in_progress", job="hung", check_run_id="hung-1")
    assert post_callback(client, body, actions.mint(repo=L4)).status_code == 200
    settings.CRCR_ZOMBIE_TIMEOUT = -1

    assert zombies.sweep() == 1
    comment.send_due()

    [posted] = on_github(github)
    assert "`CI / hung`" in posted["body"]
