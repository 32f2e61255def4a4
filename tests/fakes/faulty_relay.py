"""A reverse proxy on 127.0.0.1 in front of the relay that answers as an unhealthy path to it
would: it answers some requests itself (a 429, a 503) or passes a request on and withholds the
relay's answer until the client has given up, as configured, and records what it carried."""

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from sandbox.loopback import LoopbackServer, QuietHandler, Served


@dataclass(frozen=True)
class Answer:
    """Answer the request with this instead of passing it on."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok": false, "error": "injected", "detail": "by the faulty relay"}'


@dataclass(frozen=True)
class Withhold:
    """Pass the request on, then keep the relay's answer until the next request arrives."""


@dataclass
class Carried:
    at: float  # time.monotonic()
    body: bytes
    headers: dict[str, str]
    relay_status: int | None  # what the relay answered (None: not passed on)
    answered: int | None  # what the client was answered (None: nothing)


@dataclass
class FaultyRelay(Served):
    target: str = ""  # the relay's base URL
    faults: list[Answer | Withhold] = field(default_factory=list)  # one a request, then none
    carried: list[Carried] = field(default_factory=list)

    def start(self) -> "FaultyRelay":
        proxy = self
        lock = threading.Lock()
        arrived = threading.Condition(lock)
        # One request at a time reaches the relay: a retry waits until the relay has answered
        # the attempt whose answer is withheld, as it would have over a slow network.
        passing = threading.Lock()

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    fault = proxy.faults.pop(0) if proxy.faults else None
                    seen = Carried(time.monotonic(), body, dict(self.headers), None, None)
                    proxy.carried.append(seen)
                    arrived.notify_all()
                if isinstance(fault, Answer):
                    seen.answered = fault.status
                    self.reply(fault.status, fault.body, fault.headers)
                    return
                with passing:
                    status, content, headers = self.forward(body)
                seen.relay_status = status
                if isinstance(fault, Withhold):
                    with lock:  # until the client, having timed out, tries again
                        arrived.wait_for(lambda: proxy.carried[-1] is not seen, timeout=30)
                    self.close_connection = True
                    return
                seen.answered = status
                self.reply(status, content, headers)

            def forward(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                request = urllib.request.Request(
                    proxy.target + self.path, data=body, headers=headers, method="POST"
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        status, content, kept = answer.status, answer.read(), answer.headers
                except urllib.error.HTTPError as error:
                    status, content, kept = error.code, error.read(), error.headers
                drop = ("content-length", "transfer-encoding", "connection")
                return status, content, {k: v for k, v in kept.items() if k.lower() not in drop}

        self.server = LoopbackServer(Handler)
        return self
