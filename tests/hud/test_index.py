import pytest

from allowlist.models import DownstreamRepo
from tests.allowlist.support import run_sync

pytestmark = pytest.mark.django_db


def test_crcr_lists_the_allowlist_by_level_most_trusted_first(client, upstream_allowlist_path):
    run_sync(upstream_allowlist_path)

    response = client.get("/crcr")

    page = response.content.decode()
    assert response.status_code == 200
    positions = [page.index(f'id="level-{level}"') for level in ("L4", "L3", "L2", "L1")]
    assert positions == sorted(positions)
    assert '<a href="https://github.com/pytorch/crcr-test">pytorch/crcr-test</a>' in page
    assert "<code>ciflow/crcr/crcr-test</code>" in page
    assert "atalman, can-gaa-hou" in page
    assert "10 downstream repositories receive upstream events" in page
    assert "No repositories at this level." in page  # L4 is empty upstream


def test_crcr_answers_with_or_without_a_trailing_slash_and_a_csp(client):
    for path in ("/crcr", "/crcr/"):
        response = client.get(path)
        assert response.status_code == 200
        assert "default-src 'self'" in response["Content-Security-Policy"]


def test_crcr_escapes_what_admins_typed(client):
    DownstreamRepo.objects.create(repo="a/b", level="L2", oncalls=["<script>alert(1)</script>"])

    page = client.get("/crcr").content.decode()

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_disabled_repo_is_not_listed(client):
    DownstreamRepo.objects.create(repo="a/off", level="L2", enabled=False)

    assert "a/off" not in client.get("/crcr").content.decode()
