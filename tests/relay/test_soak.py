"""A short soak (bench/soak.py runs 30 minutes): mixed traffic while Redis keys expire, and
afterwards no key is left without a TTL, the key count and the workers' memory level off."""

from tests.soak import soak


def test_under_mixed_traffic_every_redis_key_expires_and_nothing_grows():
    report = soak(seconds=45, rate=30, ttl=15, every=3)  # (a delivery is used for 10 s)

    print("\n".join(report.lines()))
    assert report.keys_without_ttl == []
    assert set(report.answers) <= {200}, report.answers
    assert report.growth(lambda s: s.keys) < 0.25, report.lines()
