"""Reading the allowlist file from a path or a URL.

URLs are fetched with a conditional request (If-None-Match with the ETag of the last good
copy). A GitHub `blob` URL (https://github.com/<owner>/<repo>/blob/<ref>/<path>, or the same on
the host of GITHUB_API_URL) is read through the contents API as the raw file, not the HTML page;
the ref is the first path segment after `blob`, as GitHub's own URLs are ambiguous for refs
with a '/'.

Failure mode: when a URL cannot be fetched (network error, timeout, any non-2xx but 304), the
last good copy stored by the previous sync is used and a warning says so; without one, the
sync fails. A local path that cannot be read always fails.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings

from allowlist.models import SyncedFile

BLOB_PATH_RE = re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+)/blob/(?P<ref>[^/]+)/(?P<path>.+)$")
RAW_MEDIA_TYPE = "application/vnd.github.raw+json"


class SourceError(Exception):
    """The allowlist could not be read and no last good copy exists."""


@dataclass(frozen=True)
class FetchedFile:
    location: str
    text: str
    etag: str = ""
    unchanged: bool = False  # 304: the stored copy is current
    warning: str = ""  # set when the stored copy stands in for an unreachable source


def is_url(location: str) -> bool:
    return urlsplit(location).scheme in {"http", "https"}


def resolve_url(url: str) -> tuple[str, dict[str, str]]:
    """The URL to GET and its extra headers; GitHub blob URLs become contents-API requests."""
    parts = urlsplit(url)
    api_host = urlsplit(settings.GITHUB_API_URL).hostname
    match = BLOB_PATH_RE.match(parts.path)
    if match and parts.hostname in {"github.com", "www.github.com", api_host}:
        owner, repo, ref, path = match.group("owner", "repo", "ref", "path")
        api = f"{settings.GITHUB_API_URL}/repos/{owner}/{repo}/contents/{quote(path)}"
        return f"{api}?ref={quote(ref, safe='')}", {"Accept": RAW_MEDIA_TYPE}
    return url, {}


def read(location: str) -> FetchedFile:
    """The allowlist text at `location` (a path or an http(s) URL)."""
    if not is_url(location):
        try:
            return FetchedFile(location, Path(location).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read {location}: {exc}") from None
    stored = SyncedFile.objects.filter(location=location).first()
    url, headers = resolve_url(location)
    if stored and stored.etag:
        headers["If-None-Match"] = stored.etag
    try:
        response = requests.get(url, headers=headers, timeout=settings.CRCR_ALLOWLIST_TIMEOUT)
        if response.status_code == 304 and stored:
            return FetchedFile(location, stored.content, stored.etag, unchanged=True)
        if response.status_code != 200:
            raise requests.HTTPError(f"HTTP {response.status_code} from {url}")
        response.encoding = "utf-8"
        return FetchedFile(location, response.text, response.headers.get("ETag", ""))
    except requests.RequestException as exc:
        if stored is None:
            raise SourceError(f"cannot fetch {location}: {exc}") from None
        return FetchedFile(
            location,
            stored.content,
            stored.etag,
            warning=(
                f"cannot fetch {location} ({exc}); keeping the last good copy "
                f"(sha256 {stored.sha256[:12]}, fetched {stored.fetched_at:%Y-%m-%d %H:%M} UTC)"
            ),
        )
