"""The upstream vocabulary the relay's webhooks and the HUD's envelopes share."""

import pytest

from crcr_site.upstream import ciflow_pr_number


@pytest.mark.parametrize(
    ("ref", "number"),
    [
        ("refs/tags/ciflow/trunk/12345", 12345),
        ("refs/tags/ciflow/crcr/npu/7", 7),
        ("refs/heads/main", 0),
        ("refs/tags/ciflow/trunk/0", 0),
        ("refs/tags/ciflow/trunk/99999999999", 0),
        ("refs/tags/ciflow/12", 0),
        (None, 0),
    ],
)
def test_a_ciflow_tag_push_names_its_pr(ref, number):
    assert ciflow_pr_number(ref) == number
