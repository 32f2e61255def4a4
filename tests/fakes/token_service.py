"""GitHub Actions' OIDC token service on 127.0.0.1 (what ACTIONS_ID_TOKEN_REQUEST_URL names in
a job with `id-token: write`): it checks the job's request token and hands out a token of the
simulated issuer for the audience asked for, as the runner's service does."""

import json
import secrets
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.loopback import LoopbackServer, QuietHandler, Served


@dataclass
class TokenService(Served):
    mint: Callable[[str], str] = lambda audience: ""  # audience -> a signed token
    request_token: str = field(default_factory=lambda: secrets.token_hex(16))
    audiences: list[str] = field(default_factory=list)  # asked for, in order

    def start(self) -> "TokenService":
        service = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if self.headers.get("Authorization") != f"bearer {service.request_token}":
                    self.reply(401, b'{"message": "bad request token"}')
                    return
                audience = query.get("audience", [""])[0]
                service.audiences.append(audience)
                body = json.dumps({"value": service.mint(audience)}).encode()
                self.reply(200, body, {"Content-Type": "application/json"})

        self.server = LoopbackServer(Handler)
        return self

    @property
    def request_url(self) -> str:
        """As the runner sets it: a URL with a query of its own already."""
        return f"{self.url}/_apis/token?api-version=2.0"
