"""Text as a database can hold it.

PostgreSQL refuses NUL in text and jsonb, and every text it stores must be UTF-8, which a lone
surrogate (valid in a Python string, and in JSON read by `json`) is not. Fields that are
ours to refuse (names, ids) are refused at the edge (`storable`); free text that is not (an
upstream PR's title, a failing test's message) is stored with U+FFFD in their place.
"""

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> bool:
    """Whether a text can be stored as it is (no NUL, no lone surrogate)."""
    if value.isascii():
        return "\x00" not in value
    return _UNSTORABLE.search(value) is None


def stored_text(value: str) -> str:
    """A text as it can be stored: NUL and lone surrogates become U+FFFD (for free text that
    is not ours to refuse, such as an upstream PR's title)."""
    return value if storable(value) else _UNSTORABLE.sub("\ufffd", value)
