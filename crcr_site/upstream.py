"""The upstream project's event vocabulary that more than one app reads: the relay's webhook
(relay/webhook.py) and the HUD's envelopes from other relays (hud/records.py), which carry
the upstream webhook their downstream was sent. Here, below both, so neither imports the
other for it."""

import re

_CIFLOW_TAG = re.compile(r"refs/tags/ciflow/.+/([1-9][0-9]{0,9})")


def ciflow_pr_number(ref: object) -> int:
    """The PR a push of `refs/tags/ciflow/<name>/<N>` was made for (N), else 0."""
    match = _CIFLOW_TAG.fullmatch(ref) if isinstance(ref, str) else None
    number = int(match.group(1)) if match else 0
    return number if number < 2**31 else 0
