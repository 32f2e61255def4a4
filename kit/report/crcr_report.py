#!/usr/bin/env python3
"""CRCR's downstream reporter: one CI job's state, sent to the relay's callback endpoint.

The body is the one PyTorch's callback reporter sends (the echoed client_payload plus
`workflow`, contract §2), so PyTorch's relay and CRCR both take it. On top of that reporter it
turns JUnit XML into test counts and failed tests, mints the GitHub Actions OIDC token itself,
tries again what may succeed later (429, 5xx, timeouts, lost connections) within a time
budget, and never fails the job unless asked to: a problem is a warning and exit status 0.

Standard library only, Python 3.9 or newer, so that it runs on a bare runner, and one file, so
that copying kit/report/ is all a repository needs to vendor it. Every option
may come from the environment variable OPTIONS names instead (the names PyTorch's action
sets), which is how action.yml and buildkite.sh call it.
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import IO, Any
from xml.parsers import expat

VERSION = "1"
USER_AGENT = f"crcr-report/{VERSION}"
AUDIENCE = "pytorch-cross-repo-ci-relay"
STATUSES = ("in_progress", "completed")
SELF_REPORTS = ("nightly", "periodic")
MAX_FAILED_TESTS = 50  # what the relay keeps of a job's failed tests (contract §2)
MESSAGE_CAP = 500
NAME_CAP = 1000
MAX_TIME = 10.0  # seconds an attempt waits for an answer, as PyTorch's reporter does
RETRY_BUDGET = 120.0  # seconds all attempts may take: a rate-limit minute and a few 503s
BACKOFF_FIRST, BACKOFF_CAP = 1.0, 30.0
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")

# option -> (environment variable, help). A command-line option wins over its variable.
OPTIONS = {
    "status": ("STATUS", "in_progress or completed"),
    "conclusion": ("CONCLUSION", "when completed: success, failure, cancelled, ..."),
    "job-name": ("JOB_NAME", "the job's name; each matrix leg needs its own"),
    "callback-url": ("CALLBACK_URL", "the relay's callback endpoint"),
    "delivery-id": ("DELIVERY_ID_OVERRIDE", "nightly or periodic: the upstream commit tested"),
    "event-type": ("EVENT_TYPE_OVERRIDE", "nightly or periodic, with --delivery-id"),
    "test-results": ("TEST_RESULTS", 'JSON counts: {"passed": N, "failed": N, "skipped": N}'),
    "failed-tests": ("FAILED_TESTS", "JUnit XML files or globs, one a line or comma-separated"),
    "failed-tests-detail": ("FAILED_TESTS_DETAIL", 'JSON list of {"name": ..., "message": ...}'),
    "triage-verdict": ("TRIAGE_VERDICT", "JSON object: an advisory verdict on a failure"),
    "artifact-url": ("ARTIFACT_URL", "where the job's logs and reports are kept"),
    "audience": ("OIDC_AUDIENCE", f"the OIDC audience the relay expects ({AUDIENCE})"),
    "max-time": ("MAX_TIME", f"seconds each attempt waits for an answer ({MAX_TIME:g})"),
    "retry-budget": ("RETRY_BUDGET", f"seconds all attempts may take ({RETRY_BUDGET:g})"),
    "fail-on-error": ("FAIL_ON_ERROR", "true: a report that fails fails the step (false)"),
}

# What to do about each refusal the relay names (its `error`), or else its HTTP status.
HINTS = {
    "token_missing": "the job needs `permissions: id-token: write` (or OIDC_TOKEN set)",
    "token_invalid": "the relay refused the OIDC token: check `audience` and that it trusts "
    "this CI's issuer",
    "pipeline_not_registered": "ask the relay's operators to map this Buildkite pipeline to "
    "its repository (CRCR_CI_PROVIDERS)",
    "claim_not_allowed": "the relay takes this pipeline's results only from its allowed branches",
    "claims_mismatch": "report from the job whose token it is (its run id and attempt)",
    "identity_mismatch": "the token's repository ids are not those the allowlist records",
    "invalid_body": "the detail names the field",
    "no_dispatch": "the relay sent this delivery to no such repository: report only from "
    "runs its repository_dispatch started (a nightly sets delivery-id and event-type)",
    "replayed": "each report needs a token of its own: do not reuse one OIDC_TOKEN",
    "bad_dispatch_token": "report the client_payload the dispatch carried, unchanged",
    "dispatch_token_required": "report the client_payload the dispatch carried, unchanged",
    "duplicate": "this job reported this status already: give each matrix leg its own job-name",
    "not_started": "report in_progress before completed",
    "rate_limited": "the repository sent more callbacks this minute than the relay takes",
    "too_large": "the body is over the relay's limit: fewer or shorter failed tests",
    404: "callback-url must be the relay's /github/callback endpoint",
    405: "callback-url must be the relay's /github/callback endpoint",
}


class Problem(Exception):
    """What keeps a report from being sent or recorded, said so that a person can act on it."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


# --- the inputs -------------------------------------------------------------------------------


@dataclass
class Report:
    """One callback to send, with what was left out of it and why."""

    body: dict[str, Any]
    callback_url: str
    audience: str
    max_time: float
    budget: float
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.body["workflow"]["status"])


def options(argv: list[str] | None, environ: Mapping[str, str]) -> dict[str, str]:
    parser = argparse.ArgumentParser(
        prog="crcr_report.py",
        description="Report a CI job's state to a CRCR relay (or PyTorch's).",
        epilog="Each option defaults to the environment variable named in brackets.",
    )
    for name, (variable, text) in OPTIONS.items():
        default = environ.get(variable, "")
        parser.add_argument(f"--{name}", default=default, help=f"{text} [{variable}]")
    return {
        name.replace("-", "_"): value.strip()
        for name, value in vars(parser.parse_args(argv)).items()
    }


def flag(value: str, name: str, notes: list[str]) -> bool:
    if value.lower() in TRUE + FALSE:
        return value.lower() in TRUE
    notes.append(f"{name}: {value!r} is neither true nor false; taken as false")
    return False


def seconds(value: str, name: str, default: float, notes: list[str]) -> float:
    try:
        number = float(value) if value else default
    except ValueError:
        number = -1.0
    if not 0 < number < 86400:
        notes.append(f"{name}: {value!r} is not a number of seconds; {default:g} used")
        return default
    return number


def optional_json(value: str, name: str, kind: type, notes: list[str]) -> Any:
    """A JSON input of `kind` (dict or list), or None (noted) when it is not one."""
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        notes.append(f"{name} is not JSON ({exc}); left out")
        return None
    if not isinstance(parsed, kind):
        notes.append(f"{name} must be a JSON {kind.__name__}; left out")
        return None
    return parsed


def run_context(environ: Mapping[str, str]) -> dict[str, str]:
    """Who is reporting: the variables PyTorch's action sets, else GitHub's own."""
    get = environ.get
    run_id = get("RUN_ID") or get("GITHUB_RUN_ID") or ""
    server, repo = get("GITHUB_SERVER_URL", "https://github.com"), get("GITHUB_REPOSITORY")
    github_url = f"{server}/{repo}/actions/runs/{run_id}" if repo and run_id else ""
    return {
        "name": get("WORKFLOW_NAME") or get("GITHUB_WORKFLOW") or "",
        "url": get("WORKFLOW_URL") or github_url,
        "run_id": run_id,
        "run_attempt": get("RUN_ATTEMPT") or get("GITHUB_RUN_ATTEMPT") or "1",
        "check_run_id": get("CHECK_RUN_ID") or "",
        "job_name": get("GITHUB_JOB") or "",
    }


def client_payload(environ: Mapping[str, str]) -> dict[str, Any]:
    """The dispatch's client_payload, as the action passes it, or from GitHub's event file."""
    raw = environ.get("CLIENT_PAYLOAD", "").strip()
    payload: Any = None
    try:
        if raw and raw != "null":
            payload = json.loads(raw)
        elif environ.get("GITHUB_EVENT_PATH"):
            with open(environ["GITHUB_EVENT_PATH"], encoding="utf-8") as event:
                payload = json.load(event).get("client_payload")
    except (OSError, ValueError, AttributeError) as exc:
        raise Problem(f"the dispatch's client_payload cannot be read: {exc}") from None
    if not isinstance(payload, dict):
        raise Problem(
            "no client_payload: this run was not started by the relay's repository_dispatch "
            "(a nightly or periodic run sets delivery-id and event-type instead)"
        )
    return payload


def base_payload(given: dict[str, str], environ: Mapping[str, str]) -> dict[str, Any]:
    """What the workflow is added to: the echoed client_payload, or a self-report's own."""
    delivery_id, event_type = given["delivery_id"], given["event_type"]
    if not delivery_id and not event_type:
        return client_payload(environ)
    if not delivery_id or not event_type:
        raise Problem("delivery-id and event-type go together (a nightly or periodic report)")
    if event_type not in SELF_REPORTS:
        raise Problem(f"event-type must be nightly or periodic, not {event_type!r}")
    if given["status"] != "completed":
        raise Problem(f"a {event_type} report is completed only, not {given['status']!r}")
    return {
        "event_type": event_type,
        "delivery_id": delivery_id,
        "payload": {"repository": {"full_name": "pytorch/pytorch"}, "head_sha": delivery_id},
    }


def workflow(given: dict[str, str], environ: Mapping[str, str], notes: list[str]) -> dict:
    status = given["status"]
    if status not in STATUSES:
        raise Problem(f"status must be in_progress or completed, not {status!r}")
    run = run_context(environ)
    job_name = given["job_name"] or run["job_name"]
    required = {"RUN_ID": run["run_id"], "WORKFLOW_NAME": run["name"], "job-name": job_name}
    missing = [name for name, value in required.items() if not value]
    if missing:
        raise Problem(
            f"{', '.join(missing)} not set: run this on GitHub Actions, through buildkite.sh, or "
            "set RUN_ID, RUN_ATTEMPT, WORKFLOW_NAME, WORKFLOW_URL and job-name yourself"
        )
    conclusion = (given["conclusion"] or None) if status == "completed" else None
    if status == "completed" and conclusion is None:
        notes.append("completed without a conclusion: pass conclusion: ${{ job.status }}")
    self_report = bool(given["delivery_id"])
    at = now_iso()
    return {  # PyTorch's reporter's keys, in its order
        "schema_version": environ.get("SCHEMA_VERSION") or "1",
        "status": status,
        "conclusion": conclusion,
        "name": run["name"],
        "url": run["url"] or None,
        "run_attempt": run["run_attempt"],
        "job_name": job_name,
        "check_run_id": run["check_run_id"] or f"{run['run_id']}-{run['run_attempt']}",
        "run_id": run["run_id"],
        "started_at": at if self_report or status == "in_progress" else None,
        "completed_at": at if status == "completed" else None,
    }


def tests(given: dict[str, str], notes: list[str]) -> dict[str, Any]:
    """test_results and failed_tests_detail: as given, else read from the JUnit files."""
    found: dict[str, Any] = {}
    counts = optional_json(given["test_results"], "test-results", dict, notes)
    detail = optional_json(given["failed_tests_detail"], "failed-tests-detail", list, notes)
    if given["failed_tests"]:
        junit = read_junit(given["failed_tests"], notes)
        if junit is not None:
            counts = counts if counts is not None else junit.counts()
            detail = detail if detail is not None else junit.failures
    if counts is not None:
        found["test_results"] = counts
    if detail is not None:
        found["failed_tests_detail"] = detail[:MAX_FAILED_TESTS]
    return found


def web_url(url: str) -> bool:
    """Whether `url` is one this reporter may open (urllib opens file: URLs too)."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def read(given: dict[str, str], environ: Mapping[str, str]) -> Report:
    """The report the inputs describe; Problem when there is none to send."""
    notes: list[str] = []
    if not given["callback_url"]:
        raise Problem("callback-url is not set: the relay's https://.../github/callback")
    if not web_url(given["callback_url"]):
        raise Problem(f"callback-url must be an http(s) URL, not {given['callback_url']!r}")
    base = base_payload(given, environ)
    flow = workflow(given, environ, notes)
    flow.update(tests(given, notes))
    if given["artifact_url"]:
        flow["artifact_url"] = given["artifact_url"]
    verdict = optional_json(given["triage_verdict"], "triage-verdict", dict, notes)
    if verdict is not None:
        flow["triage_verdict"] = verdict
    return Report(
        body={**base, "workflow": flow},
        callback_url=given["callback_url"].rstrip("/"),
        audience=given["audience"] or AUDIENCE,
        max_time=seconds(given["max_time"], "max-time", MAX_TIME, notes),
        budget=seconds(given["retry_budget"], "retry-budget", RETRY_BUDGET, notes),
        notes=notes,
    )


# --- JUnit XML --------------------------------------------------------------------------------


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        total = self.passed + self.failed + self.skipped
        return {"passed": self.passed, "failed": self.failed, "skipped": self.skipped,
                "total": total}  # fmt: skip

    def add(self, other: Tally) -> None:
        self.passed, self.failed = self.passed + other.passed, self.failed + other.failed
        self.skipped += other.skipped
        self.failures += other.failures[: MAX_FAILED_TESTS - len(self.failures)]


class UnsafeXML(ValueError):
    pass


class JUnitReader:
    """One JUnit XML file, streamed through expat: each <testcase> counted as passed, failed
    (a <failure> or <error> in it) or skipped (<skipped>). A document type declaration is
    refused before its first entity is read, so nothing can expand (billion laughs) or be
    fetched (external entities): test reports never need one."""

    def __init__(self) -> None:
        self.run = Tally()
        self.case: dict[str, Any] | None = None
        self.capturing = False
        self.parser = expat.ParserCreate()
        self.parser.StartDoctypeDeclHandler = self.refuse
        self.parser.EntityDeclHandler = self.refuse
        self.parser.StartElementHandler = self.start
        self.parser.EndElementHandler = self.end
        self.parser.CharacterDataHandler = self.text

    def refuse(self, *_: object) -> None:
        raise UnsafeXML("it declares a document type (<!DOCTYPE>), which a test report does not")

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        if tag == "testcase":
            name, classname = attributes.get("name", ""), attributes.get("classname", "")
            full = f"{classname}.{name}" if classname and name else name or classname
            self.case = {"name": full[:NAME_CAP], "outcome": "passed", "message": None, "text": []}
        elif self.case is None:
            return
        elif tag in ("failure", "error"):
            self.case["outcome"] = "failed"
            if self.case["message"] is None:
                self.case["message"] = attributes.get("message") or ""
                self.capturing = True
        elif tag == "skipped" and self.case["outcome"] == "passed":
            self.case["outcome"] = "skipped"

    def end(self, tag: str) -> None:
        if tag in ("failure", "error"):
            self.capturing = False
        if tag != "testcase" or self.case is None:
            return
        case, self.case = self.case, None
        setattr(self.run, case["outcome"], getattr(self.run, case["outcome"]) + 1)
        if case["outcome"] == "failed" and len(self.run.failures) < MAX_FAILED_TESTS:
            lines = [line.strip() for line in "".join(case["text"]).splitlines()]
            message = case["message"] or next((line for line in lines if line), "")
            self.run.failures.append({"name": case["name"], "message": message[:MESSAGE_CAP]})

    def text(self, data: str) -> None:
        if self.capturing and self.case is not None and sum(map(len, self.case["text"])) < 4096:
            self.case["text"].append(data)

    def read(self, path: str) -> Tally:
        with open(path, "rb") as report:
            self.parser.ParseFile(report)
        return self.run


def junit_paths(patterns: str) -> tuple[list[str], list[str]]:
    """The files the patterns name (globs, `**` too), and the patterns that name none."""
    paths: list[str] = []
    unmatched = []
    for pattern in (p.strip() for p in patterns.replace(",", "\n").splitlines()):
        if not pattern:
            continue
        matched = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        paths += [path for path in matched if path not in paths]
        if not matched:
            unmatched.append(pattern)
    return paths, unmatched


def read_junit(patterns: str, notes: list[str]) -> Tally | None:
    """Everything the JUnit files hold (None: no file could be read); a file that cannot be
    read is left out whole (noted)."""
    paths, unmatched = junit_paths(patterns)
    notes += [f"failed-tests: no file matches {pattern!r}" for pattern in unmatched]
    run, read = Tally(), 0
    for path in paths:
        try:
            run.add(JUnitReader().read(path))
            read += 1
        except (OSError, expat.ExpatError, UnsafeXML) as exc:
            notes.append(f"failed-tests: {path} left out: {exc}")
    return run if read else None


# --- sending ----------------------------------------------------------------------------------


@dataclass
class Answer:
    """The relay's answer to one attempt (status None: there was none)."""

    status: int | None
    said: dict[str, Any]
    text: str
    retry_after: float | None = None
    source: str = "the relay"

    @property
    def retried(self) -> bool:
        """Whether the same callback may succeed later: a 429, a 5xx, or no answer."""
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        if self.status is None:
            return f"no answer from {self.source} ({self.text})"
        error, detail = self.said.get("error"), self.said.get("detail")
        words = " ".join(str(part) for part in (error, detail and f"({detail})") if part)
        return f"{self.source} answered HTTP {self.status} {words or self.text[:200]}".strip()


def retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, from its delay or its HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def delay(attempt: int, after: float | None) -> float:
    """Seconds before attempt `attempt + 1`: backoff doubling from BACKOFF_FIRST up to
    BACKOFF_CAP, never under the relay's Retry-After, spread by up to half again so that a
    matrix of jobs refused at once does not come back at once."""
    backoff = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (attempt - 1))
    return max(after or 0.0, backoff) * (1 + random.random() / 2)  # noqa: S311 (not a secret)


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST would arrive as a GET: report the redirect instead of following it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirects)  # proxies from the environment, as curl


def answer_of(status: int, body: bytes, headers: Any) -> Answer:
    text = body.decode("utf-8", "replace")
    try:
        said = json.loads(text)
    except ValueError:
        said = None
    return Answer(
        status,
        said if isinstance(said, dict) else {},
        " ".join(text.split())[:300],
        retry_after(headers.get("Retry-After") if headers is not None else None),
    )


def post(url: str, data: bytes, headers: dict[str, str], timeout: float) -> Answer:
    # The callback URL is checked by web_url(), the token service's in Tokens().
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return answer_of(response.status, response.read(65536), response.headers)
    except urllib.error.HTTPError as error:
        return answer_of(error.code, error.read(65536), error.headers)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(None, {}, f"{type(reason).__name__}: {reason}".rstrip(": "))


class Tokens:
    """The OIDC token of each attempt: OIDC_TOKEN when given, else a fresh one from GitHub
    Actions' token service (the job's `id-token: write`), as core.getIDToken() asks for it."""

    def __init__(self, environ: Mapping[str, str], audience: str, say: Say) -> None:
        self.given = environ.get("OIDC_TOKEN", "").strip()
        self.url = environ.get("ACTIONS_ID_TOKEN_REQUEST_URL", "")
        self.bearer = environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
        self.audience, self.say = audience, say
        if not self.given and self.url and not web_url(self.url):
            raise Problem("ACTIONS_ID_TOKEN_REQUEST_URL is not an http(s) URL")
        if not (self.given or (self.url and self.bearer)):
            raise Problem(
                "no OIDC token: give the job `permissions: id-token: write` (GitHub Actions), "
                "or set OIDC_TOKEN"
            )

    def mint(self, timeout: float) -> str | Answer:
        """A token, or the token service's answer when it gave none."""
        if self.given:
            return self.given
        audience = urllib.parse.quote(self.audience, safe="")
        url = f"{self.url}{'&' if '?' in self.url else '?'}audience={audience}"
        headers = {"Authorization": f"bearer {self.bearer}", "Accept": "application/json",
                   "User-Agent": USER_AGENT}  # fmt: skip
        request = urllib.request.Request(url, headers=headers)  # noqa: S310
        try:
            with OPENER.open(request, timeout=timeout) as response:
                raw = response.read(65536)
        except urllib.error.HTTPError as error:
            answer = answer_of(error.code, error.read(65536), error.headers)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            answer = Answer(None, {}, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
        else:
            return self.token_of(raw)
        answer.source = "GitHub's OIDC token service"
        if not answer.retried:
            raise Problem(answer.describe())
        return answer

    def token_of(self, raw: bytes) -> str:
        try:
            token = json.loads(raw).get("value")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise Problem("GitHub's OIDC token service answered without a token")
        self.say.mask(token)
        return token


def deliver(report: Report, tokens: Tokens, say: Say) -> tuple[Answer, int]:
    """Send the report until it is answered for good or the budget is spent; the last answer
    and how many attempts it took."""
    data = json.dumps(report.body).encode()
    deadline = time.monotonic() + report.budget
    attempt = 0
    while True:
        attempt += 1
        timeout = max(0.5, min(report.max_time, deadline - time.monotonic()))
        token = tokens.mint(timeout)
        if isinstance(token, str):
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                       "User-Agent": USER_AGENT}  # fmt: skip
            answer = post(report.callback_url, data, headers, timeout)
        else:
            answer = token
        if not answer.retried:
            return answer, attempt
        wait = delay(attempt, answer.retry_after)
        if time.monotonic() + wait >= deadline:
            return answer, attempt
        say.line(f"{answer.describe()}; trying again in {wait:.1f} s")
        time.sleep(wait)


# --- saying what happened ---------------------------------------------------------------------


class Say:
    """Lines for the job's log; on GitHub Actions, annotations and step outputs too."""

    def __init__(self, out: IO[str], environ: Mapping[str, str]) -> None:
        self.out = out
        self.github = environ.get("GITHUB_ACTIONS") == "true"
        self.outputs = environ.get("GITHUB_OUTPUT", "") if self.github else ""

    def line(self, text: str) -> None:
        print(f"CRCR: {text}", file=self.out, flush=True)

    def annotate(self, level: str, text: str) -> None:
        if self.github:  # a workflow command: its data escaped, so it stays one command
            data = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            print(f"::{level} title=CRCR report::{data}", file=self.out, flush=True)
        else:
            self.line(f"{level}: {text}")

    def mask(self, secret: str) -> None:
        if self.github:
            print(f"::add-mask::{secret}", file=self.out, flush=True)

    def output(self, **values: str) -> None:
        if self.outputs:
            with open(self.outputs, "a", encoding="utf-8") as file:
                file.writelines(
                    f"{name.replace('_', '-')}={value}\n" for name, value in values.items()
                )


def outcome(answer: Answer) -> str:
    if not answer.ok:
        return "failed"
    if answer.said.get("status") == "ignored":
        return "ignored"
    return "already_recorded" if answer.said.get("already_recorded") else "recorded"


def hint(answer: Answer) -> str:
    found = HINTS.get(str(answer.said.get("error", ""))) or HINTS.get(answer.status or 0)
    return f": {found}" if found else ""


def failed(say: Say, text: str, fail_on_error: bool) -> int:
    say.annotate("error" if fail_on_error else "warning", text)
    return 1 if fail_on_error else 0


def main(
    argv: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
) -> int:
    """Report once; the exit status (0 unless fail-on-error and the report failed)."""
    environ = os.environ if environ is None else environ
    say = Say(sys.stdout if out is None else out, environ)
    given = options(argv, environ)
    notes: list[str] = []
    fail_on_error = flag(given["fail_on_error"], "fail-on-error", notes)
    try:
        report = read(given, environ)
        for note in notes + report.notes:
            say.annotate("warning", note)
        answer, attempts = deliver(report, Tokens(environ, report.audience, say), say)
    except Problem as problem:
        say.output(outcome="failed", http_status="")
        return failed(say, f"nothing was reported: {problem}", fail_on_error)
    except Exception as exc:  # a bug of ours must not fail the build either
        say.output(outcome="failed", http_status="")
        return failed(say, f"nothing was reported: {type(exc).__name__}: {exc}", fail_on_error)
    result = outcome(answer)
    say.output(outcome=result, http_status=str(answer.status or ""))
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    if result == "failed":
        text = f"{report.status} not recorded{tries}: {answer.describe()}{hint(answer)}"
        return failed(say, text, fail_on_error)
    if result == "ignored":
        say.annotate("notice", "the relay ignored this result: the repository is not "
                     "allowlisted, or is at L1, whose results are not kept")  # fmt: skip
    else:
        again = (
            " (already recorded: an earlier attempt got through)" if result != "recorded" else ""
        )
        say.line(f"{report.status} recorded{again}{tries}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
