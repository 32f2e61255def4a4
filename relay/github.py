"""The one module that talks to GitHub: the relay's GitHub App.

App JWT (RS256) → installation of a repo → installation access token → REST calls. Installation
ids and tokens are cached in this process and in Redis (shared by every process) until shortly
before they expire. Every call has a timeout; rate-limit headers are read, and GitHub's primary
and secondary limits become `RateLimited` with the wait GitHub asked for.

Failure modes: Redis is only a cache here (fail open: mint again when it is down). GitHub's own
failures become the typed errors below; `transient` ones are worth retrying later.

The transport is urllib3 (requests' own): a fan-out makes one call per repo at once from many
threads, and measured on this machine a call through requests.Session costs 1.04 ms of CPU
against 0.53 ms through urllib3's pool, which under the GIL is the difference between a
50-repo fan-out costing about one GitHub round trip or two.
"""

import base64
import binascii
import functools
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import jwt
import urllib3
from django.conf import settings

from allowlist.entry import repo_key
from crcr_site import metrics
from crcr_site.redis_connection import REDIS_ERRORS, get_redis
from relay import budget, redis_keys

logger = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
# Tokens live an hour; stop using one this long before GitHub says it expires.
TOKEN_MARGIN = 300
# Installation ids change only when an App is reinstalled (then a 404 makes us look again).
INSTALLATION_TTL = 24 * 3600
JWT_LIFETIME = 540  # GitHub refuses an App JWT that expires more than 10 minutes ahead
JWT_BACKDATE = 60  # and one issued "in the future" by a clock that runs ahead
PAGE_ATTEMPTS = 3  # a page of a listing, tried again when GitHub fails it
COMMENT_PAGES = 30  # pages of 100 comments read at most looking for one (a busy PR has 300)
WORKFLOW_FILES = 50  # workflow files the doctor reads at most (PyTorch itself has about 100)


class GitHubError(Exception):
    transient = False

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotConfigured(GitHubError):
    """No App id or key: nothing can be sent."""


class NotFound(GitHubError):
    pass


class NotInstalled(NotFound):
    """The App is not installed on that repository (or cannot see it)."""


class Rejected(GitHubError):
    """GitHub refused the request itself (401, 403, 422, ...); sending it again will not help."""


class RateLimited(GitHubError):
    transient = True

    def __init__(self, message: str, *, status: int, retry_after: float) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class GitHubUnavailable(GitHubError):
    """5xx, a timeout or no connection: try again later."""

    transient = True


@dataclass(frozen=True)
class HookDelivery:
    """One entry of GET /app/hook/deliveries."""

    id: int
    guid: str
    delivered_at: datetime
    status_code: int
    event: str
    action: str | None
    redelivery: bool

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True)
class SuiteCheckRun:
    """One entry of GET /repos/{repo}/check-suites/{id}/check-runs."""

    id: int
    name: str
    external_id: str
    head_sha: str
    app_id: str  # the App that created it


@dataclass(frozen=True)
class IssueComment:
    """One entry of GET /repos/{repo}/issues/{number}/comments."""

    id: int
    body: str
    user_type: str | None  # "Bot" for an App's comments


@dataclass(frozen=True)
class Installation:
    """GET /repos/{repo}/installation: the App's installation that covers a repository."""

    id: int
    account: str
    permissions: dict[str, str]  # e.g. {"contents": "write", "metadata": "read"}
    repository_selection: str  # "all" or "selected"


@dataclass(frozen=True)
class Repository:
    """GET /repos/{repo}: what the doctor needs of a repository."""

    full_name: str  # GitHub's spelling, which its OIDC tokens' `repository` claim carries
    default_branch: str


@dataclass(frozen=True)
class RepoFile:
    """A file's text on a branch (GET /repos/{repo}/contents/{path}?ref=...)."""

    path: str
    text: str


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: Any  # urllib3's case-insensitive HTTPHeaderDict
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content) if self.content else None

    def next_link(self) -> str | None:
        """The rel="next" URL of GitHub's Link header (cursor pagination)."""
        match = NEXT_LINK.search(self.headers.get("Link", ""))
        return match.group(1) if match else None


NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


def _retry_after(response: Answer) -> float | None:
    """Seconds GitHub asks us to wait, when this answer is a rate limit."""
    headers = response.headers
    if response.status_code not in (403, 429):
        return None
    try:
        if "Retry-After" in headers:
            return max(0.0, float(headers["Retry-After"]))
        if headers.get("X-RateLimit-Remaining") == "0" and "X-RateLimit-Reset" in headers:
            return max(0.0, float(headers["X-RateLimit-Reset"]) - time.time())
    except ValueError:
        return 60.0
    if response.status_code == 429 or "rate limit" in response.text.lower():
        return 60.0  # GitHub's advice when it names no time: wait at least a minute
    return None


def _pool_for(url: str, **options: Any) -> urllib3.PoolManager:
    """A pool for `url`, through the proxy the environment names for it (HTTPS_PROXY or
    HTTP_PROXY, unless NO_PROXY covers the host), as requests and curl would go."""
    parts = urlsplit(url)
    proxy = getproxies().get(parts.scheme)
    if proxy and not proxy_bypass(parts.hostname or ""):
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


class GitHubApp:
    def __init__(self, *, api_url: str, app_id: str, private_key: str, timeout: float) -> None:
        self.api_url = api_url.rstrip("/")
        self.app_id = app_id
        self.private_key = private_key
        self.http = _pool_for(
            self.api_url,
            maxsize=settings.CRCR_FANOUT_THREADS,
            retries=False,  # retrying is the fan-out's business, with its own backoff
            timeout=urllib3.Timeout(connect=min(3.05, timeout), read=timeout),
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "crcr-relay",
            },
        )
        self._jwt: tuple[str, float] = ("", 0.0)
        self._tokens: dict[int, tuple[str, float]] = {}
        self._installations: dict[str, int] = {}
        self._locks: dict[object, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.rate_remaining: int | None = None

    # --- authentication ------------------------------------------------------------------

    def app_jwt(self) -> str:
        token, expires = self._jwt
        now = time.time()
        if now < expires - 60:
            return token
        if not self.app_id or not self.private_key:
            raise NotConfigured("GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY are not set")
        issued = int(now) - JWT_BACKDATE
        claims = {"iat": issued, "exp": int(now) + JWT_LIFETIME, "iss": str(self.app_id)}
        token = jwt.encode(claims, self.private_key, algorithm="RS256")
        self._jwt = (token, now + JWT_LIFETIME)
        return token

    def _lock(self, key: object) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def installation_id(self, repo: str) -> int:
        key = repo_key(repo)
        known = self._installations.get(key)
        if known is not None:
            return known
        with self._lock(("installation", key)):
            known = self._installations.get(key)
            if known is not None:
                return known
            cached = _redis_get(redis_keys.installation(key))
            if cached is None:
                try:
                    body = self._call("GET", f"/repos/{repo}/installation", auth="app")
                except NotFound:
                    raise NotInstalled(f"the App is not installed on {repo}", status=404) from None
                cached = str(body["id"])
                _redis_set(redis_keys.installation(key), cached, INSTALLATION_TTL)
            self._installations[key] = int(cached)
            return int(cached)

    def installation_token(self, installation_id: int) -> str:
        token, expires = self._tokens.get(installation_id, ("", 0.0))
        if time.time() < expires:
            return token
        with self._lock(("token", installation_id)):
            token, expires = self._tokens.get(installation_id, ("", 0.0))
            if time.time() < expires:
                return token
            cached = _redis_get(redis_keys.installation_token(installation_id))
            if cached:
                token, expires = json.loads(cached)
            else:
                body = self._call(
                    "POST", f"/app/installations/{installation_id}/access_tokens", auth="app"
                )
                token = body["token"]
                expires = datetime.fromisoformat(body["expires_at"]).timestamp() - TOKEN_MARGIN
                ttl = int(expires - time.time())
                if ttl > 0:
                    _redis_set(
                        redis_keys.installation_token(installation_id),
                        json.dumps([token, expires]),
                        ttl,
                    )
            self._tokens[installation_id] = (token, expires)
            return token

    def _forget_token(self, installation_id: int, token: str) -> None:
        """Drop a token GitHub refused, unless another thread has already replaced it."""
        with self._lock(("token", installation_id)):
            if self._tokens.get(installation_id, ("", 0.0))[0] == token:
                del self._tokens[installation_id]
            key = redis_keys.installation_token(installation_id)
            cached = _redis_get(key)
            if cached and json.loads(cached)[0] == token:
                _redis_delete(key)

    # --- calls ---------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, *, auth: str, body: object = None, params: Any = None
    ) -> Any:
        return self._send(method, path, auth=auth, body=body, params=params).json()

    def _send(
        self,
        method: str,
        path: str,
        *,
        auth: str,
        body: object = None,
        params: Any = None,
        installation: int | None = None,
    ) -> Answer:
        """One request; `auth` is "app" (the App JWT) or an installation token (of
        `installation`, for the budget's accounting).

        `body` is JSON-encoded, unless it is a str: then it is sent as the JSON text it is.
        """
        credential = self.app_jwt() if auth == "app" else auth
        url = path if path.startswith("http") else self.api_url + path
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params)
        headers = {"Authorization": f"Bearer {credential}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
        try:
            raw = self.http.request(method, url, body=data, headers=headers)
        except urllib3.exceptions.TimeoutError as exc:
            metrics.github_answered(method, path, "timeout", None, installation)
            raise GitHubUnavailable(f"{method} {path}: timed out ({exc})") from None
        except urllib3.exceptions.HTTPError as exc:
            metrics.github_answered(method, path, "error", None, installation)
            raise GitHubUnavailable(f"{method} {path}: {exc}") from None
        response = Answer(raw.status, raw.headers, raw.data)
        remaining = response.headers.get("X-RateLimit-Remaining")
        metrics.github_answered(method, path, raw.status, remaining, installation)
        budget.note(installation, response.headers)
        if remaining is not None and remaining.isdigit():
            self.rate_remaining = int(remaining)
            limit = response.headers.get("X-RateLimit-Limit", "")
            if limit.isdigit() and self.rate_remaining < int(limit) // 10:
                logger.warning("GitHub rate limit low: %s of %s left", remaining, limit)
        if response.status_code < 400:
            return response
        detail = f"{method} {path}: HTTP {response.status_code} {response.text[:200]}"
        wait = _retry_after(response)
        if wait is not None:
            raise RateLimited(detail, status=response.status_code, retry_after=wait)
        if response.status_code >= 500:
            raise GitHubUnavailable(detail, status=response.status_code)
        if response.status_code == 404:
            raise NotFound(detail, status=404)
        raise Rejected(detail, status=response.status_code)

    def _as_installation(self, repo: str, method: str, path: str, body: object = None) -> Any:
        """A call with the installation token for `repo`; its JSON."""
        return self._send_as_installation(repo, method, path, body).json()

    def _send_as_installation(
        self, repo: str, method: str, path: str, body: object = None, params: Any = None
    ) -> Answer:
        """A call with the installation token for `repo`.

        What we cached may have gone stale: a revoked token (401) is replaced once; a 404 may
        mean the App was reinstalled under a new installation id, so the id is looked up again
        and the call repeated once if it changed.
        """
        installation = self.installation_id(repo)
        token = self.installation_token(installation)
        try:
            return self._send(
                method, path, auth=token, body=body, params=params, installation=installation
            )
        except Rejected as exc:
            if exc.status != 401:
                raise
            self._forget_token(installation, token)
        except NotFound:
            self._forget_installation(repo)
            if self.installation_id(repo) == installation:
                raise
        installation = self.installation_id(repo)
        token = self.installation_token(installation)
        return self._send(
            method, path, auth=token, body=body, params=params, installation=installation
        )

    def _forget_installation(self, repo: str) -> None:
        key = repo_key(repo)
        with self._lock(("installation", key)):
            self._installations.pop(key, None)
            _redis_delete(redis_keys.installation(key))

    def installation(self, repo: str) -> Installation:
        """The App's installation on `repo` as GitHub has it now (never the cache, which this
        refreshes); NotInstalled when the App is not installed there or cannot see it."""
        try:
            body = self._call("GET", f"/repos/{repo}/installation", auth="app")
        except NotFound:
            self._forget_installation(repo)
            raise NotInstalled(f"the App is not installed on {repo}", status=404) from None
        body = body if isinstance(body, dict) else {}
        account, permissions = body.get("account"), body.get("permissions")
        found = Installation(
            id=int(body["id"]),
            account=str(account.get("login") or "") if isinstance(account, dict) else "",
            permissions=(
                {str(k): str(v) for k, v in permissions.items()}
                if isinstance(permissions, dict)
                else {}
            ),
            repository_selection=str(body.get("repository_selection") or ""),
        )
        key = repo_key(repo)
        with self._lock(("installation", key)):
            self._installations[key] = found.id
            _redis_set(redis_keys.installation(key), str(found.id), INSTALLATION_TTL)
        return found

    def repository(self, repo: str) -> Repository:
        """GET /repos/{repo} with the installation's token."""
        body = self._as_installation(repo, "GET", f"/repos/{repo}")
        body = body if isinstance(body, dict) else {}
        return Repository(
            full_name=str(body.get("full_name") or repo),
            default_branch=str(body.get("default_branch") or ""),
        )

    def workflow_files(self, repo: str, ref: str) -> list[RepoFile]:
        """The workflow files (`.github/workflows/*.yml`, `*.yaml`) of `repo` at `ref`, at most
        WORKFLOW_FILES of them; [] when it has no such folder."""
        try:
            listing = self._send_as_installation(
                repo, "GET", f"/repos/{repo}/contents/.github/workflows", params={"ref": ref}
            ).json()
        except NotFound:
            return []
        names = sorted(
            str(item["path"])
            for item in (listing if isinstance(listing, list) else [])
            if isinstance(item, dict)
            and item.get("type") == "file"
            and str(item.get("name", "")).endswith((".yml", ".yaml"))
        )
        return [self._file(repo, path, ref) for path in names[:WORKFLOW_FILES]]

    def _file(self, repo: str, path: str, ref: str) -> RepoFile:
        answer = self._send_as_installation(
            repo, "GET", f"/repos/{repo}/contents/{quote(path)}", params={"ref": ref}
        ).json()
        content = answer.get("content") if isinstance(answer, dict) else None
        try:
            text = base64.b64decode(str(content or "")).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            text = ""
        return RepoFile(path, text)

    def dispatch(self, repo: str, body: dict[str, Any] | str) -> None:
        """POST /repos/{repo}/dispatches: `{"event_type": ..., "client_payload": ...}`."""
        self._as_installation(repo, "POST", f"/repos/{repo}/dispatches", body)

    def create_check_run(self, repo: str, body: dict[str, Any]) -> int:
        """POST /repos/{repo}/check-runs; the new check run's id."""
        made = self._as_installation(repo, "POST", f"/repos/{repo}/check-runs", body)
        return int(made["id"])

    def update_check_run(self, repo: str, check_run_id: int, body: dict[str, Any]) -> None:
        """PATCH /repos/{repo}/check-runs/{id} (NotFound: it is gone)."""
        self._as_installation(repo, "PATCH", f"/repos/{repo}/check-runs/{check_run_id}", body)

    def workflow_run_status(self, repo: str, run_id: str) -> str:
        """GET /repos/{repo}/actions/runs/{id}: its status (queued, in_progress, completed...)."""
        run = self._as_installation(repo, "GET", f"/repos/{repo}/actions/runs/{run_id}")
        return str(run.get("status", "")) if isinstance(run, dict) else ""

    def find_check_run(self, repo: str, head_sha: str, name: str, external_id: str) -> int | None:
        """This App's check run `name` with `external_id` on `head_sha`, if GitHub has one
        (so a create whose answer was lost is not made twice)."""
        query = urlencode({"check_name": name, "filter": "all", "app_id": self.app_id})
        path = f"/repos/{repo}/commits/{head_sha}/check-runs?{query}&per_page=100"
        listed = self._as_installation(repo, "GET", path)
        for run in listed.get("check_runs", []) if isinstance(listed, dict) else []:
            if isinstance(run, dict) and run.get("external_id") == external_id:
                return int(run["id"])
        return None

    def rerun(self, repo: str, run_id: int, *, failed_only: bool) -> bool:
        """Re-run a GitHub Actions run of `repo` (its failed jobs, or all of it); False when
        GitHub says it is already running, which is what was asked for."""
        what = "rerun-failed-jobs" if failed_only else "rerun"
        try:
            self._as_installation(repo, "POST", f"/repos/{repo}/actions/runs/{run_id}/{what}")
        except Rejected as exc:
            if exc.status == 403 and "already running" in str(exc).lower():
                return False
            raise
        return True

    def suite_check_runs(self, repo: str, suite_id: int) -> Iterator[SuiteCheckRun]:
        """The check runs of one of `repo`'s check suites (GitHub's latest of each name),
        following its pagination."""
        url: str | None = f"/repos/{repo}/check-suites/{suite_id}/check-runs"
        params: dict[str, int] | None = {"per_page": 100}
        while url:
            response = self._send_as_installation(repo, "GET", url, params=params)
            body = response.json()
            items = body.get("check_runs") if isinstance(body, dict) else None
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict) or not isinstance(item.get("id"), int):
                    continue
                app = item.get("app")
                yield SuiteCheckRun(
                    id=item["id"],
                    name=str(item.get("name") or ""),
                    external_id=str(item.get("external_id") or ""),
                    head_sha=str(item.get("head_sha") or ""),
                    app_id=str(app.get("id") or "") if isinstance(app, dict) else "",
                )
            url, params = response.next_link(), None

    def issue_comments(self, repo: str, number: int) -> Iterator[IssueComment]:
        """The comments of an issue or PR, oldest first, page by page (GitHub's page numbers:
        a page shorter than asked for is the last)."""
        for page in range(1, COMMENT_PAGES + 1):
            path = f"/repos/{repo}/issues/{number}/comments?per_page=100&page={page}"
            items = self._as_installation(repo, "GET", path) or []
            for item in items:
                user = item.get("user") or {}
                yield IssueComment(int(item["id"]), str(item.get("body") or ""), user.get("type"))
            if len(items) < 100:
                return

    def create_issue_comment(self, repo: str, number: int, body: str) -> int:
        """POST /repos/{repo}/issues/{number}/comments; the new comment's id."""
        path = f"/repos/{repo}/issues/{number}/comments"
        return int(self._as_installation(repo, "POST", path, {"body": body})["id"])

    def update_issue_comment(self, repo: str, comment_id: int, body: str) -> None:
        """PATCH /repos/{repo}/issues/comments/{id}; NotFound when it was deleted."""
        path = f"/repos/{repo}/issues/comments/{comment_id}"
        self._as_installation(repo, "PATCH", path, {"body": body})

    def hook_deliveries(self, *, per_page: int = 100) -> Iterator[HookDelivery]:
        """The App's webhook deliveries, newest first, following GitHub's cursor pagination."""
        url: str | None = "/app/hook/deliveries"
        params: dict[str, int] | None = {"per_page": per_page}
        while url:
            response = self._page(url, params)
            for item in response.json():
                yield HookDelivery(
                    id=int(item["id"]),
                    guid=str(item["guid"]),
                    delivered_at=datetime.fromisoformat(item["delivered_at"]),
                    status_code=int(item.get("status_code") or 0),
                    event=str(item.get("event") or ""),
                    action=item.get("action"),
                    redelivery=bool(item.get("redelivery")),
                )
            url, params = response.next_link(), None

    def _page(self, url: str, params: dict[str, int] | None) -> "Answer":
        """One page of a listing: a GET, so tried again (twice, a moment apart) when GitHub
        fails it, rather than lose the whole walk through a busy App's pages to one failure."""
        for attempt in range(PAGE_ATTEMPTS):
            try:
                return self._send("GET", url, auth="app", params=params)
            except GitHubUnavailable:
                if attempt == PAGE_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def redeliver(self, delivery_id: int) -> None:
        """Ask GitHub to send a delivery again (POST /app/hook/deliveries/{id}/attempts)."""
        self._call("POST", f"/app/hook/deliveries/{delivery_id}/attempts", auth="app")


def _redis_get(key: str) -> str | None:
    try:
        value = get_redis().get(key)
    except REDIS_ERRORS as exc:
        logger.warning("GitHub cache: Redis unavailable (%s); going to GitHub", exc)
        return None
    return str(value) if value is not None else None


def _redis_set(key: str, value: str, ttl: int) -> None:
    try:
        get_redis().set(key, value, ex=ttl)
    except REDIS_ERRORS as exc:
        logger.warning("GitHub cache: Redis unavailable (%s); not cached", exc)


def _redis_delete(key: str) -> None:
    try:
        get_redis().delete(key)
    except REDIS_ERRORS:
        logger.warning("GitHub cache: Redis unavailable; %s not deleted", key)


@functools.cache
def _app_for(api_url: str, app_id: str, private_key: str, timeout: float) -> GitHubApp:
    return GitHubApp(api_url=api_url, app_id=app_id, private_key=private_key, timeout=timeout)


def get_app() -> GitHubApp:
    """The App client for the current settings (one per process, thread-safe)."""
    return _app_for(
        settings.GITHUB_API_URL,
        settings.GITHUB_APP_ID,
        settings.GITHUB_APP_PRIVATE_KEY,
        settings.GITHUB_TIMEOUT,
    )
