"""The dispatch token (`client_payload.crcr.token`): the relay's signature over one dispatch.

It names the delivery, the downstream repo, the upstream PR number and head SHA. Downstream
workflows echo `client_payload` back in their callbacks, so the token comes back with every
callback and proves the callback belongs to a dispatch we sent. It is Django's signing
(HMAC-SHA256 keyed by DJANGO_SECRET_KEY, rotation through SECRET_KEY_FALLBACKS) with a timestamp,
and lives as long as the dispatch record, since a re-run days later echoes the original payload.
"""

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
    """The claims of a token we signed that has not outlived its dispatch; else BadToken."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.CRCR_DISPATCH_TTL)
        return DispatchClaims(str(data["d"]), str(data["r"]), int(data["p"]), str(data["s"]))
    except signing.SignatureExpired:
        raise BadToken("the dispatch token has expired") from None
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise BadToken("the dispatch token is not one of ours") from None
