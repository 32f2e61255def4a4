"""What the callback tests share: the upstream PR they are dispatched for, tokens, an accepted
callback, an allowlist change made by another process."""

from allowlist import lookup
from allowlist.models import DownstreamRepo
from tests.relay.support import post_callback, reporter_body, webhook_payload

PR = webhook_payload("pull_request.opened")


def token_for(actions, repo="org-b/l3", **claims):
    return actions.mint(repo=repo, **claims)


def accepted(client, actions, dispatched, job: str) -> None:
    body = reporter_body(dispatched, "in_progress", job=job, check_run_id=job)
    assert post_callback(client, body, token_for(actions)).status_code == 200


def change_elsewhere(repo: str, level: str) -> None:
    """Change a repo's level as another process would: this one's last read stays as it was."""
    seen = lookup.last_read()
    row = DownstreamRepo.objects.get(repo=repo)
    row.level = level
    row.save()
    assert lookup.last_read() == seen
    assert seen is not None


STRANGER = None


def unknown_kid(actions):
    """A token signed by a key the issuer never published."""
    global STRANGER
    if STRANGER is None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return actions.mint(kid="not-a-known-kid", key=STRANGER, repo="org-b/l3")
