import io

import pytest
from django.core.management import CommandError, call_command

from allowlist.models import SyncedFile
from allowlist.source import resolve_url
from tests.allowlist.support import level_in_force
from tests.fakes.file_server import FileServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def files():
    server = FileServer().start()
    yield server
    server.stop()


def run_sync(location: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("allowlist_sync", location, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_url_is_fetched_again_only_when_its_etag_changed(files):
    files.files["/allowlist.yml"] = "L1: [a/b]\n"
    url = files.url + "/allowlist.yml"

    run_sync(url)
    out, _ = run_sync(url)

    assert [s.status for s in files.seen] == [200, 304]
    assert files.seen[1].headers["if-none-match"] == SyncedFile.objects.get().etag
    assert "0 changed" in out
    files.files["/allowlist.yml"] = "L2: [a/b]\n"
    run_sync(url)
    assert files.seen[2].status == 200
    assert level_in_force("a/b") == "L2"


def test_when_the_source_is_down_the_last_good_copy_stays_in_force(files):
    files.files["/allowlist.yml"] = "L2: [a/b]\n"
    url = files.url + "/allowlist.yml"
    run_sync(url)
    files.down = True

    out, err = run_sync(url)

    assert "keeping the last good copy" in err
    assert "503" in err
    assert "0 changed" in out
    assert level_in_force("a/b") == "L2"


def test_when_the_source_is_down_and_there_is_no_copy_the_sync_fails(files):
    files.down = True

    with pytest.raises(CommandError, match="cannot fetch"):
        run_sync(files.url + "/allowlist.yml")
    assert SyncedFile.objects.count() == 0


def test_a_malformed_remote_file_is_refused_and_not_kept_as_the_last_good_copy(files):
    url = files.url + "/allowlist.yml"
    files.files["/allowlist.yml"] = "L1: [a/b]\n"
    run_sync(url)
    files.files["/allowlist.yml"] = "L1: [a/b]\nL2: [a/b]\n"

    with pytest.raises(CommandError, match="already listed"):
        run_sync(url)

    assert SyncedFile.objects.get().content == "L1: [a/b]\n"
    assert level_in_force("a/b") == "L1"


def test_a_github_blob_url_is_read_as_the_raw_file(files, settings):
    settings.GITHUB_API_URL = files.url
    files.files["pytorch/pytorch@main:.github/allowlist.yml"] = "L4: [a/b]\n"

    run_sync("https://github.com/pytorch/pytorch/blob/main/.github/allowlist.yml")

    assert files.seen[0].path == "/repos/pytorch/pytorch/contents/.github/allowlist.yml?ref=main"
    assert files.seen[0].headers["accept"] == "application/vnd.github.raw+json"
    assert level_in_force("a/b") == "L4"


def test_blob_urls_map_to_the_contents_api_and_other_urls_are_left_alone(settings):
    settings.GITHUB_API_URL = "https://ghe.example.com/api/v3"

    assert resolve_url("https://github.com/o/r/blob/v1.2/dir/a b.yml") == (
        "https://ghe.example.com/api/v3/repos/o/r/contents/dir/a%20b.yml?ref=v1.2",
        {"Accept": "application/vnd.github.raw+json"},
    )
    assert resolve_url("https://ghe.example.com/o/r/blob/main/x.yml")[0].endswith(
        "/repos/o/r/contents/x.yml?ref=main"
    )
    assert resolve_url("https://example.com/o/r/blob/main/x.yml") == (
        "https://example.com/o/r/blob/main/x.yml",
        {},
    )
