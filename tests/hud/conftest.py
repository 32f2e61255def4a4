import pytest

from allowlist.models import DownstreamRepo
from tests.hud.dataset import recent_noon, seed


@pytest.fixture
def seeded():
    """tests/hud/dataset.py's records, recent, with alpha (L2) and beta (L3) on the allowlist;
    Org/Gamma reports but is not listed."""
    DownstreamRepo.objects.create(repo="org/alpha", level="L2")
    DownstreamRepo.objects.create(repo="org/beta", level="L3", device="npu")
    seed(now=recent_noon())
