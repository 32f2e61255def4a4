"""The dispatch token (`client_payload.crcr.token`): the relay's signature over one dispatch.

It names the delivery, the downstream repo, the upstream PR number and head SHA. Downstream
workflows echo `client_payload` back in their callbacks, so the token comes back with every
callback and proves the callback belongs to a dispatch we sent. It is Django's signing
(HMAC-SHA256 keyed by DJANGO_SECRET_KEY, rotation through SECRET_KEY_FALLBACKS) with a timestamp,
and lives as long as the dispatch record, since a re-run days later echoes the original payload.
"""

import functools
import time
from dataclasses import dataclass

from django.conf import settings
from django.core import signing

SALT = "crcr.dispatch-token.v1"


class BadToken(Exception):
    pass


@dataclass(frozen=True)
class DispatchClaims:
    delivery_id: str
    repo: str  # casefolded owner/name
    pr_number: int
    head_sha: str


def sign(claims: DispatchClaims) -> str:
    compact = {
        "d": claims.delivery_id,
        "r": claims.repo,
        "p": claims.pr_number,
        "s": claims.head_sha,
    }
    return signing.dumps(compact, salt=SALT, compress=True)


def verify(token: str) -> DispatchClaims:
    """The claims of a token we signed that has not outlived its dispatch; else BadToken.

    Every callback of a dispatch echoes the same token, so a verified one is remembered (by
    its whole text and the signing keys it was checked with); its age is checked every time."""
    try:
        claims, signed_at = _verified(token, (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS))
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise BadToken("the dispatch token is not one of ours") from None
    if time.time() - signed_at > settings.CRCR_DISPATCH_TTL:
        raise BadToken("the dispatch token has expired")
    return claims


@functools.lru_cache(maxsize=4096)
def _verified(token: str, keys: tuple[str, ...]) -> tuple[DispatchClaims, int]:
    """A token's claims and when it was signed, once its signature checks out with `keys`
    (signing's errors otherwise, which are not remembered)."""
    data = signing.loads(token, key=keys[0], fallback_keys=list(keys[1:]), salt=SALT)
    claims = DispatchClaims(str(data["d"]), str(data["r"]), int(data["p"]), str(data["s"]))
    return claims, signing.b62_decode(token.rsplit(":", 2)[-2])
