"""Simulated OIDC issuers (GitHub Actions, Buildkite): real HTTP servers on 127.0.0.1.

Each serves its JWKS at `{issuer}/.well-known/jwks` and mints RS256 tokens with its own test
keys, shaped like the real issuers' (claims as in tests/fixtures/oidc/). It counts JWKS fetches
and can be taken down, to test the relay's key cache. Used by tests, benchmarks and the demo.
"""

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.loopback import LoopbackServer, QuietHandler, Served

AUDIENCE = "pytorch-cross-repo-ci-relay"


@dataclass
class SimulatedIssuer(Served):
    kind: str = "github"  # or "buildkite"
    down: bool = False
    jwks_fetches: int = 0
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.keys:  # given (tests reuse keys: making one costs ~0.1 s)
            self.current_kid = next(iter(self.keys))
        else:
            self.rotate()

    def rotate(self) -> str:
        """A new signing key (old ones stay published); returns its kid."""
        kid = uuid.uuid4().hex[:16]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.current_kid = kid
        return kid

    def start(self) -> "SimulatedIssuer":
        issuer = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                if issuer.down or not self.path.endswith("/.well-known/jwks"):
                    status, body = (503 if issuer.down else 404), b"{}"
                else:
                    issuer.jwks_fetches += 1
                    status, body = 200, issuer.jwks_json().encode()
                self.reply(status, body, {"Content-Type": "application/json"})

        self.server = LoopbackServer(Handler)
        return self

    @property
    def url(self) -> str:
        return f"{self.server.url}/{self.kind}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks"

    def jwks_json(self) -> str:
        import json

        keys = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            keys.append(jwk | {"kid": kid, "use": "sig", "alg": "RS256"})
        return json.dumps({"keys": keys})

    def claims(self, repo: str = "org/repo", **extra: Any) -> dict[str, Any]:
        """Claims as the real issuer writes them, for a job of `repo` (or its pipeline)."""
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": self.url,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": str(uuid.uuid4()),
        }
        if self.kind == "github":
            owner = repo.split("/")[0]
            base |= {
                "sub": f"repo:{repo}:ref:refs/heads/main",
                "repository": repo,
                "repository_owner": owner,
                "repository_id": "123456",
                "repository_owner_id": "654321",
                "run_id": "1111",
                "run_attempt": "1",
                "ref": "refs/heads/main",
                "event_name": "repository_dispatch",
            }
        else:
            base |= {
                "sub": "organization:org:pipeline:pipe:ref:refs/heads/main:commit:abc:step:x",
                "organization_slug": "org",
                "pipeline_slug": "pipe",
                "build_branch": "main",
                "organization_id": "org-uuid",
                "pipeline_id": "pipe-uuid",
            }
            base.pop("jti")  # Buildkite tokens carry no jti
        return base | extra

    def mint(
        self,
        claims: dict[str, Any] | None = None,
        *,
        kid: str | None = None,
        algorithm: str = "RS256",
        key: object = None,
        **extra: Any,
    ) -> str:
        body = claims if claims is not None else self.claims(**extra)
        kid = kid or self.current_kid
        signing_key = key if key is not None else self.keys[kid]
        return jwt.encode(body, signing_key, algorithm=algorithm, headers={"kid": kid})  # type: ignore[arg-type]
