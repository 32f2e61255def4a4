"""A simulated GitHub: a real HTTP server on 127.0.0.1 for tests, benchmarks and `make demo`.

It implements what the relay uses and checks what it receives as GitHub would: App JWTs are
verified against the App's public key (RS256, `iss`, at most 10 minutes of life), installation
tokens are minted per installation and checked on every repository call, dispatches are held to
GitHub's limits (event_type ≤ 100 characters, ≤ 10 top-level keys and < 64 KB in
client_payload). It records every call, and can be made slow or failing: latency per call, and
faults (5xx, hanging past the client's timeout, 403 secondary rate limit with Retry-After, 404
not installed) for chosen routes and repos, a number of times or for good. For the onboarding
doctor it holds repositories too: an installation's permissions (`set_permissions`; without
Contents write a dispatch is refused, as GitHub does), repos the App cannot see (`uninstall`),
default branches and files (`put_file`), served by the repo and contents routes.

It also plays GitHub's webhook sender: `send_webhook` signs and POSTs an event to the relay and
logs the delivery as GitHub's deliveries list would show it; redelivery re-sends a logged one.
"""

import base64
import hashlib
import hmac
import itertools
import json
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox import pull_page
from sandbox.loopback import LoopbackServer, QuietHandler, Served

DISPATCH_LIMIT = 65536
# What a chaotic GitHub does to a call: fails it (5xx), hangs it past the client's timeout,
# refuses it for a while (secondary rate limit with Retry-After), or does it and then hangs.
CHAOS_KINDS = ("5xx", "timeout", "rate_limit", "late")
Answer = tuple[int, dict[str, str], object]
# What an installation may do unless a test says otherwise (set_permissions): what the relay needs.
APP_PERMISSIONS = {
    "actions": "write",
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
}
NOT_ACCESSIBLE = {"message": "Resource not accessible by integration"}


def generate_app_key() -> str:
    """A new RSA private key (PEM), as GitHub gives an App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class Call:
    method: str
    path: str
    route: str
    repo: str  # casefolded owner/name, or ""
    headers: dict[str, str]
    body: Any
    received_at: float
    size: int = 0  # bytes of the request body
    status: int = 0
    answered_at: float = 0.0
    taken: bool = False  # done, though its answer timed out (a `late` fault)


@dataclass
class Fault:
    route: str  # a route name, or "*"
    kind: str  # "5xx", "timeout", "rate_limit", "not_installed", "late" (done, then hangs)
    repo: str = ""  # casefolded owner/name; "" for every repo
    times: int | None = None  # None: until cleared
    retry_after: int = 1

    def matches(self, route: str, repo: str) -> bool:
        return self.route in ("*", route) and self.repo in ("", repo) and self.times != 0


@dataclass
class SimulatedGitHub(Served):
    app_id: str
    private_key: str
    latency: float = 0.0
    hang_seconds: float = 30.0
    calls: list[Call] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    # Runs in progress: a re-run is "already running", their status is in_progress.
    running_runs: set[int] = field(default_factory=set)
    hook_deliveries: list[dict[str, Any]] = field(default_factory=list)  # newest first
    # Called with each call as it arrives, before it is answered (tests check what we had
    # recorded by then).
    observer: Callable[[Call], None] | None = None
    # Chaos: this share of all calls fails at random (seeded), as one of CHAOS_KINDS.
    chaos: float = 0.0
    chaos_seed: int = 13

    def __post_init__(self) -> None:
        key = serialization.load_pem_private_key(self.private_key.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("a GitHub App key is an RSA key")
        self.public_key = key.public_key()
        self._lock = threading.Lock()
        self._installations: dict[str, int] = {}
        self._tokens: dict[str, tuple[int, float]] = {}
        self._check_runs: dict[int, dict[str, Any]] = {}
        # GitHub puts an App's check runs on a commit in that App's check suite for it.
        self._suites: dict[tuple[str, str, str], int] = {}  # (repo, head SHA, app id) -> id
        self._suite_runs: dict[int, tuple[str, list[int]]] = {}  # id -> repo, its check runs
        self._comments: dict[int, dict[str, Any]] = {}  # issue comments by id, oldest first
        self._heads: dict[tuple[str, int], list[str]] = {}  # PR -> its heads, as webhooks said
        self._ids = itertools.count(1000)
        self._sent: dict[int, tuple[str, str, str, bytes]] = {}  # delivery id -> what was sent
        # Repositories as the doctor reads them: owners' permissions, repos the App cannot see,
        # default branches and files (repo key -> spelling, branch; (key, branch) -> files).
        self._permissions: dict[str, dict[str, str]] = {}
        self._uninstalled: set[str] = set()
        self._repos: dict[str, tuple[str, str]] = {}
        self._files: dict[tuple[str, str], dict[str, str]] = {}
        self.webhook_url = ""
        self.webhook_secret = ""
        self._rng = random.Random(self.chaos_seed)  # noqa: S311 (faults, not secrets)

    # --- running ---------------------------------------------------------------------

    def start(self) -> "SimulatedGitHub":
        self.server = LoopbackServer(_handler_for(self), backlog=256)
        return self

    # --- test controls -----------------------------------------------------------------

    def fail(
        self,
        route: str,
        kind: str,
        *,
        repo: str = "",
        times: int | None = None,
        retry_after: int = 1,
    ) -> Fault:
        fault = Fault(route, kind, repo.casefold(), times, retry_after)
        with self._lock:
            self.faults.append(fault)
        return fault

    def heal(self) -> None:
        with self._lock:
            self.faults.clear()

    def calls_to(self, route: str, repo: str | None = None) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self.calls
                if c.route == route and (repo is None or c.repo == repo.casefold())
            ]

    def dispatches(self, repo: str | None = None) -> list[Call]:
        """Dispatches GitHub accepted (204), those whose answer then timed out included."""
        return [c for c in self.calls_to("dispatch", repo) if c.status == 204 or c.taken]

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def reinstall(self, owner: str) -> int:
        """The App installed again on an owner: a new installation id, old tokens no good."""
        with self._lock:
            self._installations[owner.casefold()] = next(self._ids)
            return self._installations[owner.casefold()]

    def installation_of(self, owner: str) -> int:
        with self._lock:
            return self._installations.setdefault(owner.casefold(), next(self._ids))

    def set_permissions(self, owner: str, permissions: dict[str, str]) -> None:
        """What the App's installation on an owner may do from now on (GitHub's names)."""
        with self._lock:
            self._permissions[owner.casefold()] = dict(permissions)

    def uninstall(self, repo: str) -> None:
        """The App no longer sees `repo` (removed from a "selected repositories" installation)."""
        with self._lock:
            self._uninstalled.add(repo.casefold())

    def put_file(self, repo: str, path: str, text: str, *, branch: str | None = None) -> None:
        """A file on a branch of `repo` (its default branch unless named), as GitHub spells it."""
        key = repo.casefold()
        with self._lock:
            spelling, default = self._repos.get(key, (repo, "main"))
            self._repos[key] = (spelling, default)
            self._files.setdefault((key, branch or default), {})[path.strip("/")] = text

    def set_default_branch(self, repo: str, branch: str) -> None:
        with self._lock:
            spelling, _ = self._repos.get(repo.casefold(), (repo, "main"))
            self._repos[repo.casefold()] = (spelling, branch)

    def add_check_run(
        self, repo: str, *, name: str, head_sha: str, external_id: str = "", app_id: str = ""
    ) -> dict[str, Any]:
        """A check run on `repo` as if an App had created it (ours unless `app_id` says)."""
        body = {"name": name, "head_sha": head_sha, "external_id": external_id}
        with self._lock:
            return self._new_check_run(repo.casefold(), body, app_id or self.app_id)

    def check_suite_of(self, repo: str, head_sha: str, app_id: str = "") -> int:
        """The id of an App's check suite (ours unless `app_id` says) for a commit."""
        with self._lock:
            return self._suite_id(repo.casefold(), head_sha, app_id or self.app_id)

    def comments_on(self, repo: str, number: int) -> list[dict[str, Any]]:
        """An issue's comments as GitHub holds them now, oldest first."""
        with self._lock:
            return [
                dict(c)
                for c in self._comments.values()
                if (c["repo"], c["issue"]) == (repo.casefold(), number)
            ]

    def add_comment(self, repo: str, number: int, body: str, *, user_type: str = "User") -> int:
        """A comment someone else wrote (or one of ours the relay lost track of); its id."""
        with self._lock:
            return self._store_comment(repo.casefold(), number, body, user_type)

    # --- the webhook sender side ---------------------------------------------------------

    def send_webhook(
        self,
        event: str,
        payload: dict[str, Any] | bytes,
        *,
        guid: str | None = None,
        url: str | None = None,
        secret: str | None = None,
        timeout: float = 30.0,
    ) -> requests.Response | None:
        """Sign and POST a webhook; log it like GitHub's deliveries list (None: no answer)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if event == "pull_request" and isinstance(payload, dict):
            self._note_head(payload)
        guid = guid or str(uuid.uuid4())
        url, secret = url or self.webhook_url, secret or self.webhook_secret
        action = None if isinstance(payload, bytes) else payload.get("action")
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        redelivery = any(d["guid"] == guid for d in self.hook_deliveries)
        try:
            response: requests.Response | None = requests.post(
                url,
                data=body,
                timeout=timeout,
                headers={
                    "X-GitHub-Event": event,
                    "X-GitHub-Delivery": guid,
                    "X-Hub-Signature-256": signature,
                    "Content-Type": "application/json",
                },
            )
        except requests.RequestException:
            response = None
        self.log_delivery(
            guid,
            event,
            action,
            response.status_code if response else 0,
            redelivery=redelivery,
            sent=(url, secret, event, body),
        )
        return response

    def log_delivery(
        self,
        guid: str,
        event: str,
        action: str | None,
        status_code: int,
        *,
        redelivery: bool = False,
        delivered_at: datetime | None = None,
        sent: tuple[str, str, str, bytes] | None = None,
    ) -> int:
        """Add an entry to the deliveries list (newest first); returns its id."""
        delivery_id = next(self._ids)
        entry = {
            "id": delivery_id,
            "guid": guid,
            "redelivery": redelivery,
            "duration": 0.1,
            "delivered_at": (delivered_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
            "status": "OK" if 200 <= status_code < 300 else f"Invalid HTTP Response: {status_code}",
            "status_code": status_code,
            "event": event,
            "action": action,
            "installation_id": None,
            "repository_id": None,
        }
        with self._lock:
            self.hook_deliveries.insert(0, entry)
            if sent:
                self._sent[delivery_id] = sent
        return delivery_id

    def _note_head(self, payload: dict[str, Any]) -> None:
        pr: dict[str, Any] = payload.get("pull_request") or {}
        head = pr["head"].get("sha") if isinstance(pr.get("head"), dict) else None
        repository: dict[str, Any] = payload.get("repository") or {}
        repo = repository.get("full_name")
        if isinstance(head, str) and isinstance(repo, str) and isinstance(pr.get("number"), int):
            with self._lock:
                heads = self._heads.setdefault((repo.casefold(), pr["number"]), [])
                if head not in heads:
                    heads.append(head)

    def pull_page(self, repo: str, number: int) -> str | None:
        """The HTML page of a PR this GitHub sent webhooks for (None: it knows no such PR)."""
        with self._lock:
            heads = list(self._heads.get((repo.casefold(), number), []))
        if not heads:
            return None
        runs = [run for run in self.check_runs() if run["head_sha"] in heads]
        return pull_page.render(repo, number, heads, runs, self.comments_on(repo, number))

    # --- GitHub's side ---------------------------------------------------------------------

    def answer(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Answer:
        parts = urlsplit(raw_path)
        for verb, pattern, route, auth, handler in ROUTES:
            match = pattern.match(parts.path)
            if verb != method or not match:
                continue
            params = match.groupdict()
            repo = f"{params['owner']}/{params['repo']}".casefold() if "owner" in params else ""
            try:
                data = json.loads(body) if body else None
            except ValueError:
                return 400, {}, {"message": "Problems parsing JSON"}
            call = Call(method, raw_path, route, repo, headers, data, time.time(), len(body))
            with self._lock:
                self.calls.append(call)
            status, out_headers, out = self._answer(call, auth, handler, params, parts.query)
            call.status, call.answered_at = status, time.time()
            return status, out_headers, out
        return 404, {}, {"message": "Not Found"}

    def _answer(
        self,
        call: Call,
        auth: str,
        handler: Callable[..., Answer],
        params: dict[str, str],
        query: str,
    ) -> Answer:
        if self.observer is not None:
            self.observer(call)
        if self.latency:
            time.sleep(self.latency)
        fault = self._take_fault(call.route, call.repo) or self._chaos_fault(call.route)
        if fault is not None and fault.kind != "late":
            return self._fault_answer(fault)
        problem = self._check_auth(auth, call.headers.get("authorization", ""), call.repo)
        if problem is not None:
            return problem
        answer = handler(self, call, params, query)
        if fault is not None:  # late: done, and then the answer never comes in time
            call.taken = 200 <= answer[0] < 300
            time.sleep(self.hang_seconds)
            return 504, {}, {"message": "We couldn't respond to your request in time."}
        return answer

    def _chaos_fault(self, route: str) -> Fault | None:
        with self._lock:
            if not self.chaos or self._rng.random() >= self.chaos:
                return None
            kind = self._rng.choice(CHAOS_KINDS)
        return Fault(route, "5xx" if kind == "late" and route != "dispatch" else kind)

    def _take_fault(self, route: str, repo: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(route, repo):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _fault_answer(self, fault: Fault) -> Answer:
        if fault.kind == "timeout":
            time.sleep(self.hang_seconds)
            return 504, {}, {"message": "We couldn't respond to your request in time."}
        if fault.kind == "rate_limit":
            return (
                403,
                {"Retry-After": str(fault.retry_after)},
                {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
            )
        if fault.kind == "not_installed":
            return 404, {}, {"message": "Not Found"}
        return 502, {}, {"message": "Server Error"}

    def _check_auth(self, auth: str, header: str, repo: str) -> Answer | None:
        scheme, _, credential = header.partition(" ")
        if auth == "app":
            try:
                claims = jwt.decode(
                    credential,
                    self.public_key,
                    algorithms=["RS256"],
                    options={"require": ["iat", "exp", "iss"]},
                    leeway=60,
                )
            except jwt.PyJWTError as exc:
                return 401, {}, {"message": f"A JSON web token could not be decoded: {exc}"}
            if str(claims["iss"]) != self.app_id or claims["exp"] - time.time() > 600 + 60:
                return (
                    401,
                    {},
                    {"message": "'Expiration time' claim ('exp') is too far in the future"},
                )
            return None
        if auth == "installation":
            token = self._tokens.get(credential) if scheme.lower() in ("bearer", "token") else None
            if token is None or token[1] < time.time():
                return 401, {}, {"message": "Bad credentials"}
            if self.installation_of(repo.split("/")[0]) != token[0] or repo in self._uninstalled:
                return 404, {}, {"message": "Not Found"}
        return None

    def permissions_of(self, owner: str) -> dict[str, str]:
        with self._lock:
            return dict(self._permissions.get(owner.casefold(), APP_PERMISSIONS))

    def _installation(self, call: Call, params: dict[str, str], query: str) -> Answer:
        owner = params["owner"].casefold()
        with self._lock:
            if call.repo in self._uninstalled:
                return 404, {}, {"message": "Not Found"}
            selected = any(repo.startswith(f"{owner}/") for repo in self._uninstalled)
        installation = self.installation_of(params["owner"])
        return (
            200,
            {},
            {
                "id": installation,
                "account": {"login": params["owner"]},
                "app_id": int(self.app_id),
                "permissions": self.permissions_of(owner),
                "repository_selection": "selected" if selected else "all",
            },
        )

    def _access_token(self, call: Call, params: dict[str, str], query: str) -> Answer:
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = datetime.now(UTC) + timedelta(hours=1)
        with self._lock:
            self._tokens[token] = (int(params["id"]), expires.timestamp())
            owners = [o for o, i in self._installations.items() if i == int(params["id"])]
        return (
            201,
            {},
            {
                "token": token,
                "expires_at": expires.isoformat().replace("+00:00", "Z"),
                "permissions": self.permissions_of(owners[0] if owners else ""),
                "repository_selection": "all",
            },
        )

    def _dispatch(self, call: Call, params: dict[str, str], query: str) -> Answer:
        if self.permissions_of(params["owner"]).get("contents") != "write":
            return 403, {}, NOT_ACCESSIBLE
        body = call.body if isinstance(call.body, dict) else {}
        event_type, client_payload = body.get("event_type"), body.get("client_payload", {})
        if not isinstance(event_type, str) or not 0 < len(event_type) <= 100:
            return 422, {}, {"message": "Invalid request.\n\nevent_type is too long or missing."}
        if not isinstance(client_payload, dict) or len(client_payload) > 10:
            return (
                422,
                {},
                {"message": "Invalid request.\n\nclient_payload has too many properties"},
            )
        # The whole body is bigger than its client_payload: only a big body needs measuring.
        if (
            call.size >= DISPATCH_LIMIT
            and len(json.dumps(client_payload).encode()) >= DISPATCH_LIMIT
        ):
            return 422, {}, {"message": "Invalid request.\n\nclient_payload is too large"}
        return 204, {}, None

    def _repository(self, call: Call, params: dict[str, str], query: str) -> Answer:
        with self._lock:
            spelling, default = self._repos.get(
                call.repo, (f"{params['owner']}/{params['repo']}", "main")
            )
        owner, name = spelling.split("/", 1)
        return (
            200,
            {},
            {
                "full_name": spelling,
                "name": name,
                "owner": {"login": owner},
                "default_branch": default,
                "private": False,
            },
        )

    def _contents(self, call: Call, params: dict[str, str], query: str) -> Answer:
        """A file (base64, as GitHub sends it) or a folder's listing, on `ref` or the default
        branch; an installation without Contents permission may read neither."""
        if not self.permissions_of(params["owner"]).get("contents"):
            return 403, {}, NOT_ACCESSIBLE
        path = unquote(params["path"]).strip("/")
        with self._lock:
            default = self._repos.get(call.repo, ("", "main"))[1]
            ref = parse_qs(query).get("ref", [default])[0]
            files = dict(self._files.get((call.repo, ref), {}))
        if path in files:
            data = files[path].encode()
            encoded = base64.encodebytes(data).decode()  # GitHub's, with a newline every 76
            return (
                200,
                {},
                {
                    "type": "file",
                    "encoding": "base64",
                    "content": encoded,
                    "name": path.rsplit("/", 1)[-1],
                    "path": path,
                    "size": len(data),
                },
            )
        children: dict[str, str] = {}
        for name in files:
            if name.startswith(f"{path}/"):
                child, _, rest = name[len(path) + 1 :].partition("/")
                children[child] = "dir" if rest else "file"
        if not children:
            return 404, {}, {"message": "Not Found"}
        listing = [
            {"type": kind, "name": child, "path": f"{path}/{child}"}
            for child, kind in sorted(children.items())
        ]
        return 200, {}, listing

    def check_runs(self, head_sha: str | None = None) -> list[dict[str, Any]]:
        """The check runs GitHub holds (on `head_sha`), oldest first."""
        with self._lock:
            runs = [dict(run) for run in self._check_runs.values()]
        return [run for run in runs if head_sha is None or run["head_sha"] == head_sha]

    def delete_check_run(self, check_run_id: int) -> None:
        """As if the check run were gone (GitHub answers 404 for it from now on)."""
        with self._lock:
            self._check_runs.pop(check_run_id, None)

    def _create_check_run(self, call: Call, params: dict[str, str], query: str) -> Answer:
        body = call.body if isinstance(call.body, dict) else {}
        if not body.get("name") or not body.get("head_sha"):
            return 422, {}, {"message": "Invalid request.\n\nname and head_sha are required"}
        if problem := _check_run_problem(body):
            return 422, {}, {"message": f"Invalid request.\n\n{problem}"}
        with self._lock:
            return 201, {}, self._new_check_run(call.repo, body, self.app_id)

    def _suite_id(self, repo: str, head_sha: str, app_id: str) -> int:
        suite = self._suites.setdefault((repo, head_sha, app_id), next(self._ids))
        self._suite_runs.setdefault(suite, (repo, []))
        return suite

    def _new_check_run(self, repo: str, body: dict[str, Any], app_id: str) -> dict[str, Any]:
        suite = self._suite_id(repo, str(body["head_sha"]), app_id)
        run_id = next(self._ids)
        run = {"status": "queued", "external_id": "", **body, "id": run_id, "repo": repo}
        run |= {"app": {"id": int(app_id)}, "check_suite": {"id": suite}}
        self._check_runs[run_id] = run
        self._suite_runs[suite][1].append(run_id)
        return dict(run)

    def _suite_check_runs(self, call: Call, params: dict[str, str], query: str) -> Answer:
        """GitHub's default `filter=latest`: the newest check run of each name, paginated."""
        suite = int(params["id"])
        args = parse_qs(query)
        per_page = min(int(args.get("per_page", ["30"])[0]), 100)
        page_no = max(int(args.get("page", ["1"])[0]), 1)
        with self._lock:
            repo, run_ids = self._suite_runs.get(suite, ("", []))
            if repo != call.repo:
                return 404, {}, {"message": "Not Found"}
            held = [self._check_runs[i] for i in run_ids if i in self._check_runs]
            latest = {run["name"]: dict(run) for run in held}
        runs = list(latest.values())
        page = runs[(page_no - 1) * per_page : page_no * per_page]
        headers = {}
        if page_no * per_page < len(runs):
            path = urlsplit(call.path).path
            headers["Link"] = (
                f'<{self.url}{path}?per_page={per_page}&page={page_no + 1}>; rel="next"'
            )
        return 200, headers, {"total_count": len(runs), "check_runs": page}

    def _update_check_run(self, call: Call, params: dict[str, str], query: str) -> Answer:
        body = call.body if isinstance(call.body, dict) else {}
        if problem := _check_run_problem(body):
            return 422, {}, {"message": f"Invalid request.\n\n{problem}"}
        with self._lock:
            run = self._check_runs.get(int(params["id"]))
            if run is None or run["repo"] != call.repo:
                return 404, {}, {"message": "Not Found"}
            run.update(body)
            return 200, {}, dict(run)

    def _list_check_runs(self, call: Call, params: dict[str, str], query: str) -> Answer:
        args = {name: values[0] for name, values in parse_qs(query).items()}
        with self._lock:
            runs = [
                dict(run)
                for run in self._check_runs.values()
                if run["repo"] == call.repo
                and run["head_sha"] == params["sha"]
                and ("check_name" not in args or run["name"] == args["check_name"])
            ]
        per_page = min(int(args.get("per_page", "30")), 100)
        return 200, {}, {"total_count": len(runs), "check_runs": runs[:per_page]}

    def _store_comment(self, repo: str, number: int, body: str, user_type: str) -> int:
        comment_id = next(self._ids)
        login = "crcr-relay[bot]" if user_type == "Bot" else "someone"
        self._comments[comment_id] = {
            "id": comment_id,
            "repo": repo,
            "issue": number,
            "body": body,
            "user": {"login": login, "type": user_type},
        }
        return comment_id

    def _list_comments(self, call: Call, params: dict[str, str], query: str) -> Answer:
        args = parse_qs(query)
        per_page = min(int(args.get("per_page", ["30"])[0]), 100)
        start = (max(int(args.get("page", ["1"])[0]), 1) - 1) * per_page
        found = self.comments_on(call.repo, int(params["number"]))
        return 200, {}, found[start : start + per_page]

    def _create_comment(self, call: Call, params: dict[str, str], query: str) -> Answer:
        body = call.body.get("body") if isinstance(call.body, dict) else None
        if not isinstance(body, str) or not body or len(body) > 65536:
            return 422, {}, {"message": "Validation Failed", "errors": [{"field": "body"}]}
        with self._lock:
            comment_id = self._store_comment(call.repo, int(params["number"]), body, "Bot")
            return 201, {}, dict(self._comments[comment_id])

    def _update_comment(self, call: Call, params: dict[str, str], query: str) -> Answer:
        body = call.body.get("body") if isinstance(call.body, dict) else None
        if not isinstance(body, str) or not body or len(body) > 65536:
            return 422, {}, {"message": "Validation Failed", "errors": [{"field": "body"}]}
        with self._lock:
            comment = self._comments.get(int(params["id"]))
            if comment is None or comment["repo"] != call.repo:
                return 404, {}, {"message": "Not Found"}
            if comment["user"]["type"] != "Bot":  # an installation edits only its own
                return 403, {}, {"message": "Resource not accessible by integration"}
            comment["body"] = body
            return 200, {}, dict(comment)

    def _delete_comment(self, call: Call, params: dict[str, str], query: str) -> Answer:
        with self._lock:
            comment = self._comments.get(int(params["id"]))
            if comment is None or comment["repo"] != call.repo:
                return 404, {}, {"message": "Not Found"}
            del self._comments[int(params["id"])]
        return 204, {}, None

    def _workflow_run(self, call: Call, params: dict[str, str], query: str) -> Answer:
        status = "in_progress" if int(params["id"]) in self.running_runs else "completed"
        return 200, {}, {"id": int(params["id"]), "status": status}

    def _rerun(self, call: Call, params: dict[str, str], query: str) -> Answer:
        if int(params["id"]) in self.running_runs:
            return 403, {}, {"message": "This workflow is already running"}
        return 201, {}, {}

    def _list_deliveries(self, call: Call, params: dict[str, str], query: str) -> Answer:
        args = parse_qs(query)
        per_page = min(int(args.get("per_page", ["30"])[0]), 100)
        start = int(args.get("cursor", ["0"])[0] or 0)
        with self._lock:
            page = [dict(d) for d in self.hook_deliveries[start : start + per_page]]
            more = start + per_page < len(self.hook_deliveries)
        headers = {}
        if more:
            next_url = (
                f"{self.url}/app/hook/deliveries?per_page={per_page}&cursor={start + per_page}"
            )
            headers["Link"] = f'<{next_url}>; rel="next"'
        return 200, headers, page

    def _redeliver(self, call: Call, params: dict[str, str], query: str) -> Answer:
        with self._lock:
            original = next((d for d in self.hook_deliveries if d["id"] == int(params["id"])), None)
            sent = self._sent.get(int(params["id"]))
        if original is None:
            return 404, {}, {"message": "Not Found"}
        if sent is not None:
            url, secret, event, body = sent
            threading.Thread(
                target=self.send_webhook,
                args=(event, body),
                kwargs={"guid": original["guid"], "url": url, "secret": secret},
                daemon=True,
            ).start()
        return 202, {}, {}


CHECK_RUN_STATUSES = ("queued", "in_progress", "completed")
CHECK_RUN_CONCLUSIONS = (
    *("action_required", "cancelled", "failure", "neutral"),
    *("success", "skipped", "stale", "timed_out"),
)


def _check_run_problem(body: dict[str, Any]) -> str:
    """What GitHub would refuse in a check run's body ('' when nothing)."""
    status = body.get("status", "queued")
    if status not in CHECK_RUN_STATUSES:
        return f"status {status!r} is not one of {CHECK_RUN_STATUSES}"
    conclusion = body.get("conclusion")
    if status == "completed" and conclusion is None:
        return "conclusion is required when status is completed"
    if conclusion is not None and conclusion not in CHECK_RUN_CONCLUSIONS:
        return f"conclusion {conclusion!r} is not valid"
    output = body.get("output")
    if output is not None and not (
        isinstance(output, dict) and output.get("title") and output.get("summary")
    ):
        return "output needs a title and a summary"
    if len(str(body.get("name", ""))) > 255 or len(str(body.get("external_id", ""))) > 255:
        return "name and external_id are 255 characters at most"
    return ""


_REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], str, str, Callable[..., Answer]]] = [
    (verb, re.compile(pattern), route, auth, handler)
    for verb, pattern, route, auth, handler in [
        ("GET", rf"^{_REPO}/installation$", "installation", "app", SimulatedGitHub._installation),
        (
            "POST",
            r"^/app/installations/(?P<id>\d+)/access_tokens$",
            "token",
            "app",
            SimulatedGitHub._access_token,
        ),
        ("POST", rf"^{_REPO}/dispatches$", "dispatch", "installation", SimulatedGitHub._dispatch),
        ("GET", rf"^{_REPO}$", "repo", "installation", SimulatedGitHub._repository),
        (
            "GET",
            rf"^{_REPO}/contents/(?P<path>.+)$",
            "contents",
            "installation",
            SimulatedGitHub._contents,
        ),
        (
            "POST",
            rf"^{_REPO}/check-runs$",
            "check_run",
            "installation",
            SimulatedGitHub._create_check_run,
        ),
        (
            "PATCH",
            rf"^{_REPO}/check-runs/(?P<id>\d+)$",
            "check_run",
            "installation",
            SimulatedGitHub._update_check_run,
        ),
        (
            "GET",
            rf"^{_REPO}/commits/(?P<sha>[0-9a-f]+)/check-runs$",
            "check_runs",
            "installation",
            SimulatedGitHub._list_check_runs,
        ),
        (
            "GET",
            rf"^{_REPO}/check-suites/(?P<id>\d+)/check-runs$",
            "suite_check_runs",
            "installation",
            SimulatedGitHub._suite_check_runs,
        ),
        (
            "GET",
            rf"^{_REPO}/actions/runs/(?P<id>\d+)$",
            "workflow_run",
            "installation",
            SimulatedGitHub._workflow_run,
        ),
        (
            "POST",
            rf"^{_REPO}/actions/runs/(?P<id>\d+)/(?:rerun|rerun-failed-jobs)$",
            "rerun",
            "installation",
            SimulatedGitHub._rerun,
        ),
        (
            "GET",
            rf"^{_REPO}/issues/(?P<number>\d+)/comments$",
            "comments",
            "installation",
            SimulatedGitHub._list_comments,
        ),
        (
            "POST",
            rf"^{_REPO}/issues/(?P<number>\d+)/comments$",
            "comment_create",
            "installation",
            SimulatedGitHub._create_comment,
        ),
        (
            "PATCH",
            rf"^{_REPO}/issues/comments/(?P<id>\d+)$",
            "comment_update",
            "installation",
            SimulatedGitHub._update_comment,
        ),
        (
            "DELETE",
            rf"^{_REPO}/issues/comments/(?P<id>\d+)$",
            "comment_delete",
            "installation",
            SimulatedGitHub._delete_comment,
        ),
        ("GET", r"^/app/hook/deliveries$", "deliveries", "app", SimulatedGitHub._list_deliveries),
        (
            "POST",
            r"^/app/hook/deliveries/(?P<id>\d+)/attempts$",
            "redeliver",
            "app",
            SimulatedGitHub._redeliver,
        ),
    ]
]


_PULL_PAGE = re.compile(r"^/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pull/(?P<number>\d{1,9})$")


def _handler_for(github: SimulatedGitHub) -> type[QuietHandler]:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as api.github.com
        disable_nagle_algorithm = True  # or each answer waits for the client's delayed ACK

        def _serve(self) -> None:
            if self.command == "GET" and (page := _PULL_PAGE.match(urlsplit(self.path).path)):
                html = github.pull_page(f"{page['owner']}/{page['repo']}", int(page["number"]))
                status, text = (200, html) if html is not None else (404, "no such pull request")
                self.reply(status, text.encode(), {"Content-Type": "text/html; charset=utf-8"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, out = github.answer(self.command, self.path, headers, body)
            data = b"" if out is None else json.dumps(out).encode()
            self.reply(
                status,
                data,
                extra
                | {
                    "Content-Type": "application/json; charset=utf-8",
                    "X-RateLimit-Limit": "5000",
                    "X-RateLimit-Remaining": "4999",
                },
            )

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

    return Handler
