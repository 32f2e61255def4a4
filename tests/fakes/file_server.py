"""A real HTTP server on 127.0.0.1 serving allowlist files, as a raw URL and as GitHub does.

It checks what it receives: the GitHub contents API path answers the raw file only when asked
for `application/vnd.github.raw+json` (GitHub answers a JSON document otherwise), and ETags are
honoured with 304. Every request is recorded; `down` makes it answer 503.
"""

import hashlib
import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from sandbox.loopback import LoopbackServer, QuietHandler, Served


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    status: int = 0


@dataclass
class FileServer(Served):
    files: dict[str, str] = field(default_factory=dict)  # "/path" or "owner/repo@ref:path"
    down: bool = False
    seen: list[Seen] = field(default_factory=list)

    def start(self) -> "FileServer":
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()})
                server.seen.append(seen)
                seen.status, headers, body = server.answer(self.path, seen.headers)
                self.reply(seen.status, body, headers)

        self.server = LoopbackServer(Handler)
        return self

    def answer(self, raw_path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.down:
            return 503, {}, b"unavailable"
        parts = urlsplit(raw_path)
        key = parts.path
        if parts.path.startswith("/repos/") and "/contents/" in parts.path:
            owner_repo, path = parts.path[len("/repos/") :].split("/contents/", 1)
            ref = parse_qs(parts.query).get("ref", [""])[0]
            key = f"{owner_repo}@{ref}:{path}"
            if key in self.files and headers.get("accept") != "application/vnd.github.raw+json":
                return (
                    200,
                    {"Content-Type": "application/json"},
                    json.dumps({"type": "file", "encoding": "base64", "content": "..."}).encode(),
                )
        if key not in self.files:
            return 404, {}, b'{"message": "Not Found"}'
        body = self.files[key].encode()
        etag = '"' + hashlib.sha1(body).hexdigest() + '"'  # noqa: S324 (an ETag, not security)
        if headers.get("if-none-match") == etag:
            return 304, {"ETag": etag}, b""
        return 200, {"ETag": etag, "Content-Type": "text/plain; charset=utf-8"}, body
