"""Which URLs the HUD shows as links (hud/records.py safe_url): its fast path for the common
case answers as the definition (urlsplit: http or https, a host, no credentials) does."""

from urllib.parse import urlsplit

from hypothesis import example, given
from hypothesis import strategies as st

from hud.records import safe_url


def _by_definition(value: str) -> bool:
    parts = urlsplit(value)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.username or parts.password)
    )


PIECES = st.sampled_from(
    ["http://", "https://", "HTTPS://", "github.com", "a.b", ":8443", ":", "/", "?", "#", "@",
     "user:pw@", "[::1]", "\\", " ", "\t", "\n", "ü", "%40", "..", "-", "x"]
)  # fmt: skip
URLISH = st.lists(PIECES, max_size=8).map("".join)


@given(st.one_of(URLISH, st.text(max_size=40)))
@example("https://github.com/org/repo/actions/runs/1/job/2")
@example("https://user:pw@github.com/x")
@example("https://github.com/x@y")
@example("https://a.b:99999/")
@example("javascript:alert(1)")
def test_a_url_is_a_link_exactly_when_its_definition_says(value):
    assert safe_url(value) == (bool(value) and _by_definition(value))
