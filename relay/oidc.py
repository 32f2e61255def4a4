"""The one module that verifies callers: OIDC tokens from CI issuers.

Trust anchors are settings (`CRCR_OIDC_ISSUERS`: issuer → JWKS URL, or → `{"jwks": url, "kind":
"github" | "buildkite"}`); any other issuer is refused. Tokens must be RS256 with `exp`, `iat`,
`iss` and `aud` (`CRCR_OIDC_AUDIENCE`), LEEWAY seconds of clock skew allowed.

Identity comes only from the verified token: GitHub Actions' `repository` claim; Buildkite's
`(organization_id, pipeline_id)` through the provider map (`CRCR_CI_PROVIDERS`), whose entries
may require claims (`build_branch: [main]`). Claims deliberately not checked: `sub` (its format
depends on the repo's OIDC customisation) and `ref` (downstream decides which refs report).

JWKS are cached in Redis (24 h, shared by every process) and in this process. An unknown `kid`
refetches at most once per REFRESH_COOLDOWN per issuer across all processes (a Redis SET NX), so
a flood of tokens with made-up kids cannot make us hammer an issuer; while an issuer is
unreachable the cached keys go on working. Each fetch times out after FETCH_TIMEOUT.
"""

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson
import requests
import yaml
from django.conf import settings
from jwt.utils import base64url_decode

from allowlist.entry import repo_key
from crcr_site.errors import Refused
from crcr_site.redis_connection import get_redis
from relay import redis_keys

logger = logging.getLogger(__name__)

BUILDKITE_ISSUER = "https://agent.buildkite.com"
LEEWAY = 60
# A token may live this long at most (exp - iat). A used token's replay key is forgotten a day
# after its use (relay/retention.py): by then every token that could be replayed has expired.
MAX_LIFETIME = 12 * 3600
REFRESH_COOLDOWN = 60
FETCH_TIMEOUT = 3.0
JWKS_TTL = 24 * 3600
LOCAL_TTL = 300  # re-read Redis's copy this often, to pick up another process's refresh


class _JWS(jwt.PyJWS):
    """PyJWS with its segment check done by a regular expression instead of a Python loop.

    PyJWT 2.14+ checks every character of every segment in a generator expression (the fix for
    GHSA-hxm8-2xgr-2p9m); for a 1 KB GitHub token that was 11 % of a callback's instructions.
    This applies the same rules, with the same error, in C: only `[A-Za-z0-9_-]`, at most two
    `=` and only where they complete a 4-character group, no length of 1 mod 4, and canonical
    (the decoded bytes re-encode to the segment: no stray trailing bits).
    tests/relay/test_jws_segments.py holds it to PyJWT's own check on valid and malformed
    segments, and fails if PyJWT stops calling it."""

    _SEGMENT = re.compile(rb"([A-Za-z0-9_-]*)(={0,2})")

    @staticmethod
    def _decode_base64url_segment(segment: bytes, name: str) -> bytes:
        match = _JWS._SEGMENT.fullmatch(segment)
        if match is None:
            raise jwt.DecodeError(f"Invalid {name} padding")
        text, padding = match.groups()
        if len(text) % 4 == 1 or (padding and len(segment) % 4):
            raise jwt.DecodeError(f"Invalid {name} padding")
        decoded = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
        if base64.urlsafe_b64encode(decoded).rstrip(b"=") != text:
            raise jwt.DecodeError(f"Invalid {name} padding")
        return decoded


class _JWT(jwt.PyJWT):
    """PyJWT (claims, options, errors all its own) on top of _JWS."""

    def __init__(self) -> None:
        super().__init__()
        self._jws = _JWS(options=self._get_sig_options())


_decoder = _JWT()


class OIDCRefused(Refused):
    """A caller whose identity could not be proven (401)."""


@dataclass(frozen=True)
class Identity:
    repo: str
    issuer: str
    kind: str  # "github" or "buildkite"
    replay_key: str  # jti, or a hash of the token where there is none
    claims: dict[str, Any]

    @property
    def repo_key(self) -> str:
        return repo_key(self.repo)


def _issuers() -> dict[str, tuple[str, str]]:
    """issuer → (JWKS URL, kind)."""
    result = {}
    anchors: Any = settings.CRCR_OIDC_ISSUERS  # validated in settings.py
    for issuer, value in anchors.items():
        if isinstance(value, dict):
            result[issuer] = (value["jwks"], value.get("kind", "github"))
        else:
            result[issuer] = (value, "buildkite" if issuer == BUILDKITE_ISSUER else "github")
    return result


class KeyCache:
    def __init__(self) -> None:
        self._local: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def key_for(self, issuer: str, jwks_url: str, kid: str) -> Any:
        keys = self._keys(issuer)
        if kid not in keys:  # another process may have refreshed since we last looked
            keys = self._keys(issuer, fresh=True)
        if kid not in keys:
            if self._may_refresh(issuer):
                keys = self._fetch(issuer, jwks_url) or keys
            elif not keys:  # the very first fetch is under way in another process
                keys = self._wait_for_first_fetch(issuer)
        if kid not in keys:
            raise OIDCRefused(401, "token_invalid", "the token's signing key is unknown")
        return keys[kid]

    def _wait_for_first_fetch(self, issuer: str) -> dict[str, Any]:
        deadline = time.monotonic() + FETCH_TIMEOUT
        keys: dict[str, Any] = {}
        while not keys and time.monotonic() < deadline:
            time.sleep(0.05)
            keys = self._keys(issuer, fresh=True)
        return keys

    def _keys(self, issuer: str, *, fresh: bool = False) -> dict[str, Any]:
        fetched, keys = self._local.get(issuer, (0.0, {}))
        if not fresh and time.monotonic() - fetched < LOCAL_TTL:
            return keys
        cached = get_redis().get(redis_keys.oidc_jwks(issuer))
        keys = _parse_jwks(str(cached)) if cached else {}
        with self._lock:
            self._local[issuer] = (time.monotonic(), keys)
        return keys

    def _may_refresh(self, issuer: str) -> bool:
        return bool(
            get_redis().set(redis_keys.oidc_refresh(issuer), "1", nx=True, ex=REFRESH_COOLDOWN)
        )

    def _fetch(self, issuer: str, jwks_url: str) -> dict[str, Any] | None:
        try:
            response = requests.get(jwks_url, timeout=FETCH_TIMEOUT)
            response.raise_for_status()
            keys = _parse_jwks(response.text)
        except (requests.RequestException, ValueError) as exc:
            logger.warning("JWKS of %s unavailable (%s); keeping the cached keys", issuer, exc)
            return None
        get_redis().set(redis_keys.oidc_jwks(issuer), response.text, ex=JWKS_TTL)
        with self._lock:
            self._local[issuer] = (time.monotonic(), keys)
        return keys


def _parse_jwks(text: str) -> dict[str, Any]:
    try:
        jwks = jwt.PyJWKSet.from_dict(json.loads(text))
    except (jwt.PyJWTError, ValueError) as exc:
        raise ValueError(f"not a JWKS: {exc}") from None
    return {key.key_id: key.key for key in jwks.keys if key.key_id}


_keys = KeyCache()


def bearer(authorization: str) -> str:
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise OIDCRefused(401, "token_missing", "Authorization: Bearer <OIDC token> is required")
    return token.strip()


def claimed(authorization: str) -> tuple[str, str]:
    """(issuer, repository) as an unverified token claims them, for the audit of a refusal;
    empty strings where it claims nothing readable. Never a basis for a decision."""
    try:
        _header, claims = _peek(bearer(authorization))
    except OIDCRefused:
        return "", ""
    issuer, repo = claims.get("iss"), claims.get("repository")
    return (
        issuer[:200] if isinstance(issuer, str) else "",
        repo[:140] if isinstance(repo, str) else "",
    )


def verify(authorization: str) -> Identity:
    """The caller's identity from `Authorization: Bearer <token>`, or OIDCRefused.

    Raises one of REDIS_ERRORS (crcr_site/redis_connection.py) when the key cache cannot be
    reached (the caller answers 503).
    """
    token = bearer(authorization)
    header, unverified = _peek(token)
    if header.get("alg") != "RS256":
        raise OIDCRefused(401, "token_invalid", "only RS256 tokens are accepted")
    issuer = unverified.get("iss")
    anchors = _issuers()
    if not isinstance(issuer, str) or issuer not in anchors:
        raise OIDCRefused(401, "token_invalid", f"issuer {issuer!r} is not trusted")
    jwks_url, kind = anchors[issuer]
    key = _keys.key_for(issuer, jwks_url, str(header.get("kid", "")))
    try:
        claims = _decoder.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=settings.CRCR_OIDC_AUDIENCE,
            issuer=issuer,
            leeway=LEEWAY,
            options={
                "verify_signature": True,
                "verify_exp": True,
                "verify_nbf": True,
                "verify_iat": True,
                "verify_aud": True,
                "verify_iss": True,
                "strict_aud": True,
                "require": ["exp", "iat", "iss", "aud"],
            },
        )
    except jwt.PyJWTError as exc:
        raise OIDCRefused(401, "token_invalid", f"the token is not valid: {exc}") from None
    times = (claims["exp"], claims["iat"])  # PyJWT takes numeric strings too
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in times):
        raise OIDCRefused(401, "token_invalid", "exp and iat must be NumericDate numbers")
    if times[0] - times[1] > MAX_LIFETIME:
        raise OIDCRefused(401, "token_invalid", f"tokens may live {MAX_LIFETIME // 3600} h at most")
    replay = claims.get("jti") or "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    repo = _github_repo(claims) if kind == "github" else _buildkite_repo(claims)
    return Identity(repo=repo, issuer=issuer, kind=kind, replay_key=str(replay), claims=claims)


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A compact JWS's header and claims, unverified: only to choose the issuer and its key,
    which PyJWT then verifies everything against (a cheaper read than PyJWT's own
    unverified decode, which every callback would otherwise pay for twice)."""
    try:
        header_part, claims_part, _signature = token.split(".")
        header, claims = (
            orjson.loads(base64url_decode(part)) for part in (header_part, claims_part)
        )
    except (ValueError, TypeError, binascii.Error):  # orjson's errors are ValueErrors
        raise OIDCRefused(401, "token_invalid", "the token is not a JWT") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise OIDCRefused(401, "token_invalid", "the token is not a JWT")
    return header, claims


def _github_repo(claims: dict[str, Any]) -> str:
    repo = claims.get("repository")
    if not isinstance(repo, str) or "/" not in repo:
        raise OIDCRefused(401, "token_invalid", "the token names no repository")
    return repo


def _buildkite_repo(claims: dict[str, Any]) -> str:
    org, pipeline = claims.get("organization_id"), claims.get("pipeline_id")
    if not org or not pipeline:
        raise OIDCRefused(401, "token_invalid", "the token has no organization_id/pipeline_id")
    entry = providers().get(f"{org}/{pipeline}")
    if entry is None:
        raise OIDCRefused(
            403, "pipeline_not_registered", f"Buildkite pipeline {org}/{pipeline} is not registered"
        )
    for claim, allowed in entry.required_claims.items():
        if str(claims.get(claim)) not in allowed:
            raise OIDCRefused(
                403,
                "claim_not_allowed",
                f"claim {claim}={claims.get(claim)!r} is not one of {allowed}",
            )
    return entry.repo


@dataclass(frozen=True)
class Provider:
    repo: str
    required_claims: dict[str, list[str]]


_providers: tuple[str, float, dict[str, Provider]] | None = None


def providers() -> dict[str, Provider]:
    """The Buildkite map from CRCR_CI_PROVIDERS (re-read when the file changes)."""
    global _providers
    path = settings.CRCR_CI_PROVIDERS
    if not path:
        return {}
    mtime = Path(path).stat().st_mtime
    if _providers is None or _providers[:2] != (path, mtime):
        _providers = (path, mtime, parse_providers(Path(path).read_text()))
    return _providers[2]


def parse_providers(text: str) -> dict[str, Provider]:
    document = yaml.safe_load(text) or {}
    section = (document.get("providers") or {}).get("buildkite") or {}
    raw = section.get("repo_map") or document.get("buildkite") or {}
    result = {}
    for ids, value in raw.items():
        if isinstance(value, str):
            result[str(ids)] = Provider(value, {})
        else:
            required = {
                str(claim): [str(v) for v in (values or [])]
                for claim, values in (value.get("required_claims") or {}).items()
            }
            result[str(ids)] = Provider(str(value["repo"]), required)
    return result
