"""An HTTP forward proxy on 127.0.0.1 (what HTTP_PROXY names in a locked-down network): it
takes absolute-form requests, passes them on, and records the URLs it carried."""

import urllib.request
from dataclasses import dataclass, field

from sandbox.loopback import LoopbackServer, QuietHandler, Served


@dataclass
class HttpProxy(Served):
    carried: list[str] = field(default_factory=list)

    def start(self) -> "HttpProxy":
        proxy = self

        class Handler(QuietHandler):
            def forward(self) -> None:
                if not self.path.startswith("http://"):  # a proxy is asked for whole URLs
                    self.reply(400, b"absolute-form request expected")
                    return
                proxy.carried.append(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                request = urllib.request.Request(
                    self.path, data=body, headers=headers, method=self.command
                )
                direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with direct.open(request, timeout=10) as answer:
                        status, content, answer_headers = (
                            answer.status,
                            answer.read(),
                            answer.headers,
                        )
                except urllib.error.HTTPError as error:
                    status, content, answer_headers = error.code, error.read(), error.headers
                kept = {
                    k: v
                    for k, v in answer_headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection")
                }
                self.reply(status, content, kept)

            do_GET = do_POST = do_PATCH = do_DELETE = forward

        self.server = LoopbackServer(Handler)
        return self
