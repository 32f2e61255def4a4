"""A remote HUD (PyTorch's, say) as a real HTTP server on 127.0.0.1: it takes envelopes at
/api/crcr/results, checks the bot token and the envelope's shape, and records what it took."""

import json
import time
from dataclasses import dataclass, field

from sandbox.loopback import LoopbackServer, QuietHandler, Served


@dataclass
class RemoteHud(Served):
    token: str
    fail_next: int = 0  # answer 503 this many times first
    delay: float = 0.0  # seconds before each answer
    drip: float = 0.0  # seconds between the bytes of an answer's body
    received: list[dict] = field(default_factory=list)
    refused: int = 0

    def start(self) -> "RemoteHud":
        hud = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = hud.answer(self.path, self.headers.get("x-hud-internal-bot", ""), body)
                if not hud.drip:
                    self.reply(status, b"{}")
                    return
                answer = b'{"ok": true}' + b" " * 64
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                for byte in answer:  # a slow or broken HUD: one byte at a time
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(hud.drip)

        self.server = LoopbackServer(Handler)
        return self

    @property
    def url(self) -> str:
        return f"{self.server.url}/api/crcr/results"

    def answer(self, path: str, token: str, body: bytes) -> int:
        time.sleep(self.delay)
        if path != "/api/crcr/results" or token != self.token:
            self.refused += 1
            return 401
        if self.fail_next > 0:
            self.fail_next -= 1
            return 503
        envelope = json.loads(body)
        workflow = envelope["untrusted"]["callback_payload"].get("workflow") or {}
        if not workflow.get("job_name") or not workflow.get("check_run_id"):
            return 400
        self.received.append(envelope)
        return 200
