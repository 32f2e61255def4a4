"""The keys a script touches together share a Redis Cluster slot, whatever a caller sends
(relay/redis_keys.py)."""

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from relay import redis_keys

# Delivery ids come from a callback's body (GitHub sends GUIDs, anyone may send anything);
# braces are what a hash tag is made of.
text = st.text(alphabet=st.sampled_from("ab:/{}-"), max_size=12) | st.text(max_size=12)


def _slot(key: str) -> int:
    return key_slot(key.encode())


@given(delivery=text, repo=text, run_id=text, attempt=st.integers(1, 99), job=text)
def test_a_dispatch_and_its_jobs_are_in_one_slot(delivery, repo, run_id, attempt, job):
    dispatched = redis_keys.dispatched(delivery, repo)

    assert _slot(redis_keys.job(delivery, repo, run_id, attempt, job)) == _slot(dispatched)


def test_a_brace_in_a_delivery_id_cannot_empty_the_tag_or_join_two_dispatches():
    tags = {redis_keys.dispatch_tag(d, "org/repo") for d in ("}x", "}y", "x}", "guid-1")}

    assert len(tags) == 4
    assert all(len(tag) > 2 and tag.count("}") == 1 for tag in tags)
    assert redis_keys.dispatch_tag("guid-1", "org/repo") == "{guid-1:org/repo}"  # as before
