"""CRCR settings: every value comes from the environment.

The defaults run the embedded mode (SQLite, in-process or loopback fakeredis, no GitHub
credentials) so `migrate` and the management commands work on a fresh checkout. What production
must set is reported by `manage.py check --deploy` (crcr_site/checks.py), not by refusing to
start. A value that cannot be parsed raises ImproperlyConfigured naming the variable.

Secrets may also be given as `NAME_FILE` (a path whose content is the value), the convention of
Docker and Kubernetes secrets.
"""

import json
import os
import warnings
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def envstr(name: str, default: str = "", environ: Mapping[str, str] = os.environ) -> str:
    return environ.get(name, default).strip()


def envbool(name: str, default: bool, environ: Mapping[str, str] = os.environ) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")


def _envnumber[N: (int, float)](
    name: str, default: N, cast: type[N], minimum: N, environ: Mapping[str, str]
) -> N:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise ImproperlyConfigured(f"{name}={raw!r} is not {kind}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}")
    return value


def envint(
    name: str, default: int, *, minimum: int = 0, environ: Mapping[str, str] = os.environ
) -> int:
    return _envnumber(name, default, int, minimum, environ)


def envfloat(
    name: str, default: float, *, minimum: float = 0.0, environ: Mapping[str, str] = os.environ
) -> float:
    return _envnumber(name, default, float, minimum, environ)


def envlist(name: str, default: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    return [item.strip() for item in environ.get(name, default).split(",") if item.strip()]


def envsecret(name: str, environ: Mapping[str, str] = os.environ) -> str:
    """`NAME`, else the content of the file named by `NAME_FILE`, else ''."""
    value = environ.get(name, "")
    path = environ.get(f"{name}_FILE", "").strip()
    if value and path:
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            value = Path(path).read_text()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    # PEM keys keep their inner newlines; only the file's trailing newline goes.
    return value.strip()


def envjson(name: str, default: object, environ: Mapping[str, str] = os.environ) -> object:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None


PREPARE_ON_REQUEST_ONLY = 1 << 30  # psycopg's threshold: never prepare unless asked to


def database_config(url: str) -> dict[str, object]:
    """DATABASES['default'] for a URL; SQLite gets the settings several writer processes need."""
    try:
        config: dict[str, object] = dict(dj_database_url.parse(url))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock when a
        # transaction starts, so two processes never deadlock upgrading read locks; the busy
        # timeout makes a writer wait for the lock instead of failing with "database is locked".
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
        return config
    # Django's backend, failing fast for a moment after a failed connection attempt
    # (crcr_site/postgresql/base.py); every wait for the server is bounded by DATABASE_TIMEOUT.
    if config["ENGINE"] == "django.db.backends.postgresql":
        config["ENGINE"] = "crcr_site.postgresql"
    timeout = envfloat("DATABASE_TIMEOUT", 2.0)
    options: dict[str, object] = {"connect_timeout": max(2, round(timeout))}  # libpq: whole s, 2+
    if (pool_max := envint("DATABASE_POOL_MAX", 20)) > 0:
        # One psycopg pool per process: the fan-out's threads each borrow a connection for a
        # moment instead of opening their own (and PostgreSQL's max_connections bounds
        # processes times DATABASE_POOL_MAX, not processes times threads).
        config["CONN_MAX_AGE"] = 0
        options["pool"] = {"min_size": 1, "max_size": max(pool_max, 2), "timeout": timeout}
    else:  # DATABASE_POOL_MAX=0: a persistent connection per thread instead (e.g. behind PgBouncer)
        config["CONN_MAX_AGE"] = 60
        config["CONN_HEALTH_CHECKS"] = True
    if envbool("DATABASE_PREPARED", pool_max > 0):
        # crcr_site/sql.py's prepared_cursor prepares the callback's fixed statements on their
        # connection; psycopg prepares nothing while this is None (Django's default). Django's
        # own cursors bind on the client and never prepare, whatever its value.
        options["prepare_threshold"] = PREPARE_ON_REQUEST_ONLY
    if options:
        config["OPTIONS"] = options
    return config


# --- Django's own ---------------------------------------------------------------------------

# The embedded default is public on purpose; check --deploy reports it (crcr.E002).
EMBEDDED_SECRET_KEY = "django-insecure-crcr-embedded-mode-only"  # noqa: S105
SECRET_KEY = envsecret("DJANGO_SECRET_KEY") or EMBEDDED_SECRET_KEY
# Earlier keys, separated by whitespace (a file: one a line), still accepted when checking
# signatures: the dispatch tokens downstream echoes for CRCR_DISPATCH_TTL, sessions. Rotating
# the key without them refuses every callback of a dispatch signed before (403).
SECRET_KEY_FALLBACKS = envsecret("DJANGO_SECRET_KEY_FALLBACKS").split()
DEBUG = envbool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", "")

# Behind a TLS-terminating proxy: DJANGO_SECURE_COOKIES=true marks cookies Secure and trusts
# X-Forwarded-Proto from the proxy.
if envbool("DJANGO_SECURE_COOKIES", False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks_db",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "crcr_site",
    "allowlist",
    "relay",
    "hud",
]
# The sandbox (simulated GitHub, OIDC issuers and downstream CI; `manage.py demo`) is for trying
# CRCR out and for the tests. It is installed in the embedded mode (the public embedded key) or
# with DEBUG, so never where `check --deploy` passes; CRCR_SANDBOX=true or false decides outright.
CRCR_SANDBOX = envbool("CRCR_SANDBOX", DEBUG or SECRET_KEY == EMBEDDED_SECRET_KEY)
if CRCR_SANDBOX:
    INSTALLED_APPS.append("sandbox")

MIDDLEWARE = [
    "crcr_site.log_context.RequestContext",  # first: every later line knows its request
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

# Failed admin logins (django-axes): after CRCR_LOGIN_FAILURES failures from one address, or
# for one user name, further attempts are refused for CRCR_LOGIN_COOLOFF minutes *before* any
# password is hashed. Hashing is what let a few clients guessing passwords starve the relay's
# workers (the admin shares them unless it runs on its own: docs/operations.md).
# django-axes rather than the relay's Redis limiter: attempts and lock-outs are kept in the
# database, listed in the admin and cleared with `manage.py axes_reset`; it works the same
# with Redis down. A lock-out answers 429.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("CRCR_LOGIN_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("CRCR_LOGIN_COOLOFF", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # either: each is counted on its own
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Behind a load balancer the peer is the balancer: name the header it puts the client's
# address in (its last entry is the one the balancer saw), or every client shares one count.
CRCR_CLIENT_IP_HEADER = envstr("CRCR_CLIENT_IP_HEADER")
AXES_CLIENT_IP_CALLABLE = "crcr_site.client_ip.client_ip"

ROOT_URLCONF = "crcr_site.urls"
WSGI_APPLICATION = "crcr_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Before the apps' own: crcr_site/templates/admin/base_site.html adds our admin CSS.
        "DIRS": [BASE_DIR / "crcr_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# The three service URLs may carry a password, so each may come from a file (NAME_FILE) too.
DATABASE_URL = envsecret("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'crcr.sqlite3'}"
DATABASES = {"default": database_config(DATABASE_URL)}
# The HUD's covering indexes (hud/models.py, `include=`) are for PostgreSQL's index-only scans;
# SQLite builds them on their key columns alone, which is all it can use, and Django warns so
# (models.W040) once per index from every process. Expected on SQLite, so not printed there.
SILENCED_SYSTEM_CHECKS = (
    ["models.W040"] if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else []
)
# After a failed connection attempt, fail at once for this long (crcr_site/postgresql/base.py).
DATABASE_FAIL_FAST = envfloat("DATABASE_FAIL_FAST", 1.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Serve straight from the apps' static folders when collectstatic has not run (embedded mode);
# a production image runs collectstatic and WhiteNoise serves STATIC_ROOT.
WHITENOISE_USE_FINDERS = True
# ...so in embedded mode a missing STATIC_ROOT is expected, not worth a warning in every
# process's output (the benchmarks, a bare runserver); the finders serve the files. Anywhere
# else it means collectstatic did not run, and WhiteNoise says so. WhiteNoise warns on behalf
# of its caller (Django's handler loading the middleware), so the filter goes by the message.
if SECRET_KEY == EMBEDDED_SECRET_KEY:
    warnings.filterwarnings("ignore", message="No directory at: ", category=UserWarning)

# Django's own Content-Security-Policy: no inline script or style anywhere on our pages.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# LOG_FORMAT=json: one JSON object a line, with the request id, delivery id, repo and job of
# whatever the line is about (crcr_site/log_context.py); plain text otherwise (`make demo`).
LOG_FORMAT = envstr("LOG_FORMAT", "plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "crcr_site.log_context.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO").upper()},
    # The task worker announces every poll at INFO; the worker loop polls twice a second.
    "loggers": {"django_tasks_db": {"level": "WARNING"}},
}

# Background work: Django's tasks framework on the database; `manage.py worker` runs it.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

# --- CRCR (names in the wire contract, section 6) -------------------------------------------

# Unset: embedded mode. A process uses an in-process fakeredis; `make demo` serves one fakeredis
# on a loopback port and hands its URL to every process it starts.
REDIS_URL = envsecret("REDIS_URL") or None


def redis_cluster(
    url: str | None, environ: Mapping[str, str] = os.environ
) -> tuple[bool, tuple[str, ...]]:
    """REDIS_CLUSTER and REDIS_CLUSTER_NODES: whether REDIS_URL names a node of a Redis Cluster
    (whose client finds the other nodes), and more nodes (`host:port`) to start from when that
    one does not answer; its scheme, credentials and TLS options hold for every node."""
    cluster = envbool("REDIS_CLUSTER", False, environ)
    nodes = tuple(envlist("REDIS_CLUSTER_NODES", "", environ))
    if not cluster:
        if nodes:
            raise ImproperlyConfigured("REDIS_CLUSTER_NODES is set, but REDIS_CLUSTER is not true")
        return False, ()
    if url is None:
        raise ImproperlyConfigured("REDIS_CLUSTER=true needs REDIS_URL (a node of the cluster)")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ImproperlyConfigured("REDIS_CLUSTER=true: REDIS_URL must be redis:// or rediss://")
    if parts.path.strip("/") not in ("", "0"):
        raise ImproperlyConfigured("REDIS_CLUSTER=true: a Redis Cluster has database 0 only")
    for node in nodes:
        host, _, port = node.rpartition(":")
        if not host or not port.isdigit():
            raise ImproperlyConfigured(f"REDIS_CLUSTER_NODES: {node!r} is not host:port")
    return True, nodes


REDIS_CLUSTER, REDIS_CLUSTER_NODES = redis_cluster(REDIS_URL)

GITHUB_API_URL = envstr("GITHUB_API_URL", "https://api.github.com").rstrip("/")
# Where GitHub's pages are (GHES, or the demo's simulated GitHub): the HUD links PRs there.
GITHUB_WEB_URL = envstr("GITHUB_WEB_URL", "https://github.com").rstrip("/")
GITHUB_APP_ID = envstr("GITHUB_APP_ID")
GITHUB_APP_PRIVATE_KEY = envsecret("GITHUB_APP_PRIVATE_KEY")
GITHUB_WEBHOOK_SECRET = envsecret("GITHUB_WEBHOOK_SECRET")
# Read timeout of every GitHub call, in seconds (connecting gets at most 3).
GITHUB_TIMEOUT = envfloat("GITHUB_TIMEOUT", 10.0, minimum=0.1)

CRCR_UPSTREAM_REPO = envstr("CRCR_UPSTREAM_REPO", "pytorch/pytorch")
CRCR_SAMPLE_ALLOWLIST = BASE_DIR / "allowlist" / "sample_allowlist.yml"
CRCR_ALLOWLIST = envstr("CRCR_ALLOWLIST") or str(CRCR_SAMPLE_ALLOWLIST)
# Seconds to wait for the allowlist URL (connect, read).
CRCR_ALLOWLIST_TIMEOUT = envint("CRCR_ALLOWLIST_TIMEOUT", 10, minimum=1)

CRCR_OIDC_AUDIENCE = envstr("CRCR_OIDC_AUDIENCE", "pytorch-cross-repo-ci-relay")
CRCR_OIDC_ISSUERS = envjson(
    "CRCR_OIDC_ISSUERS",
    {
        "https://token.actions.githubusercontent.com": (
            "https://token.actions.githubusercontent.com/.well-known/jwks"
        ),
        "https://agent.buildkite.com": "https://agent.buildkite.com/.well-known/jwks",
    },
)
if not isinstance(CRCR_OIDC_ISSUERS, dict) or not all(
    isinstance(k, str)
    and (
        isinstance(v, str)
        or (
            isinstance(v, dict)
            and isinstance(v.get("jwks"), str)
            and v.get("kind", "github") in ("github", "buildkite")
        )
    )
    for k, v in CRCR_OIDC_ISSUERS.items()
):
    raise ImproperlyConfigured(
        "CRCR_OIDC_ISSUERS must be a JSON object of issuer -> JWKS URL "
        '(or -> {"jwks": URL, "kind": "github" | "buildkite"})'
    )
CRCR_CI_PROVIDERS = envstr("CRCR_CI_PROVIDERS") or None

CRCR_ZOMBIE_TIMEOUT = envint("CRCR_ZOMBIE_TIMEOUT", 21600, minimum=60)

# Upstream check runs (relay/upstream_pr/check_runs.py); their links use CRCR_PUBLIC_URL.
CRCR_CHECK_RUN_SENDERS = envint("CRCR_CHECK_RUN_SENDERS", 16, minimum=1)
# An L4 repo's aggregate concludes once none of its jobs on the head has moved for this long.
CRCR_CHECK_SETTLE = envfloat("CRCR_CHECK_SETTLE", 300.0, minimum=0.0)
# A timed-out job alone makes the aggregate neutral (as PyTorch's merge bot reads it) unless set.
CRCR_TIMED_OUT_BLOCKS = envbool("CRCR_TIMED_OUT_BLOCKS", False)
# A job transition in Redis this old that the database does not reflect was left by a process
# that died between the two (relay/callbacks/moves.py): it is undone when its job calls back
# again. Must exceed the longest a request can live (gunicorn's timeout, 30 s in
# deploy/gunicorn.conf.py).
CRCR_ORPHAN_AFTER = envint("CRCR_ORPHAN_AFTER", 60, minimum=1)
CRCR_RATE_LIMIT_PER_MIN = envint("CRCR_RATE_LIMIT_PER_MIN", 100, minimum=1)
# Audit rows for callbacks refused before identity was proven, across the relay (0: none).
CRCR_AUDIT_UNVERIFIED_PER_MIN = envint("CRCR_AUDIT_UNVERIFIED_PER_MIN", 60, minimum=0)
CRCR_AUDIT_RETENTION_DAYS = envint("CRCR_AUDIT_RETENTION_DAYS", 90, minimum=0)
# true: a PR/push callback must echo a valid dispatch token (crcr.token) to be accepted.
CRCR_REQUIRE_DISPATCH_TOKEN = envbool("CRCR_REQUIRE_DISPATCH_TOKEN", False)
CRCR_CALLBACK_MAX_BYTES = envint("CRCR_CALLBACK_MAX_BYTES", 1024 * 1024, minimum=1024)
CRCR_DISPATCH_ENABLED = envbool("CRCR_DISPATCH_ENABLED", True)

# Webhook intake and fan-out (issue 3).
CRCR_WEBHOOK_MAX_BYTES = envint("CRCR_WEBHOOK_MAX_BYTES", 25 * 1024 * 1024, minimum=1024)
# Comma-separated fnmatch patterns of upstream push refs to dispatch; empty: every push.
CRCR_PUSH_REFS = envlist("CRCR_PUSH_REFS", "")
# The webhook answers after at most this many seconds of fan-out; the rest goes to the worker.
CRCR_FANOUT_DEADLINE = envfloat("CRCR_FANOUT_DEADLINE", 5.0, minimum=0.1)
CRCR_FANOUT_THREADS = envint("CRCR_FANOUT_THREADS", 64, minimum=1)
# A sender owns a dispatch for this long; longer than the slowest send (six GitHub calls).
CRCR_DISPATCH_LEASE = envfloat("CRCR_DISPATCH_LEASE", 120.0, minimum=1.0)
CRCR_RETRY_FIRST = envfloat("CRCR_RETRY_FIRST", 5.0, minimum=0.1)
CRCR_RETRY_CAP = envfloat("CRCR_RETRY_CAP", 300.0, minimum=1.0)
CRCR_DISPATCH_GIVE_UP = envint("CRCR_DISPATCH_GIVE_UP", 24 * 3600, minimum=60)
# How long a dispatch record (and its token, and its Redis state) lives.
CRCR_DISPATCH_TTL = envint("CRCR_DISPATCH_TTL", 3 * 24 * 3600, minimum=10)
# Periodic jobs the worker runs (seconds between runs; 0 turns one off).
CRCR_REDELIVERY_INTERVAL = envint("CRCR_REDELIVERY_INTERVAL", 300)
CRCR_ALLOWLIST_SYNC_INTERVAL = envint("CRCR_ALLOWLIST_SYNC_INTERVAL", 300)

# What the relay says on the upstream PR (issue 15).
# The deployment's public base URL: the absolute links to the HUD in comments and check runs.
CRCR_PUBLIC_URL = envstr("CRCR_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
if not CRCR_PUBLIC_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"CRCR_PUBLIC_URL={CRCR_PUBLIC_URL!r} is not an http(s) URL")
# The levels whose repos the sticky PR comment lists; empty: no comment.
CRCR_COMMENT_LEVELS = envlist("CRCR_COMMENT_LEVELS", "L3,L4")
if bad_levels := set(CRCR_COMMENT_LEVELS) - {"L1", "L2", "L3", "L4"}:
    raise ImproperlyConfigured(
        f"CRCR_COMMENT_LEVELS: {', '.join(sorted(bad_levels))} is not a level (L1 to L4)"
    )

HUD_BACKEND = envstr("HUD_BACKEND", "orm")
if HUD_BACKEND not in {"orm", "clickhouse"}:
    raise ImproperlyConfigured(f"HUD_BACKEND={HUD_BACKEND!r}: use orm or clickhouse")
HUD_STORE = {
    "orm": "hud.storage.orm.OrmRecordStore",
    "clickhouse": "hud.storage.clickhouse.store.ClickHouseRecordStore",
}[HUD_BACKEND]
HUD_CLICKHOUSE_URL = envsecret("HUD_CLICKHOUSE_URL") or None
if HUD_BACKEND == "clickhouse" and not (
    HUD_CLICKHOUSE_URL and HUD_CLICKHOUSE_URL.startswith(("http://", "https://", "chdb://"))
):
    raise ImproperlyConfigured(
        "HUD_BACKEND=clickhouse needs HUD_CLICKHOUSE_URL=http(s)://... or chdb:///path"
    )
HUD_BOT_TOKEN = envsecret("HUD_BOT_TOKEN")
HUD_FORWARD_URL = envstr("HUD_FORWARD_URL") or None
HUD_FORWARD_TOKEN = envsecret("HUD_FORWARD_TOKEN")
# The relay's own probe repo: it feeds the relay-health card, not the level tables.
CRCR_PROBE_REPO = envstr("CRCR_PROBE_REPO", "pytorch/crcr-test")
# The relay-health card judges the probe's newest this many PR runs and nightlies, and calls
# it overdue when its newest result is older than this many seconds.
CRCR_PROBE_RUNS = envint("CRCR_PROBE_RUNS", 3, minimum=1)
CRCR_PROBE_OVERDUE = envint("CRCR_PROBE_OVERDUE", 24 * 3600, minimum=60)
HUD_PAGE_SIZE = envint("HUD_PAGE_SIZE", 25, minimum=5)
# Seconds between an open HUD page's refreshes of itself (hud/static/hud/hud.js; 0: never).
CRCR_HUD_REFRESH = envint("CRCR_HUD_REFRESH", 15, minimum=0)
# A line every HUD page shows under its header (a maintenance notice; the demo's time scale).
CRCR_HUD_NOTICE = envstr("CRCR_HUD_NOTICE")
# A repo dispatched to that has answered nothing for this long is listed as silent on /crcr.
CRCR_SILENT_AFTER = envint("CRCR_SILENT_AFTER", 6 * 3600, minimum=60)
# Prometheus /metrics (crcr_site/metrics.py): counting on or off; who may read it (with a
# token, a request bearing it; without, loopback peers only).
CRCR_METRICS = envbool("CRCR_METRICS", True)
CRCR_METRICS_TOKEN = envsecret("CRCR_METRICS_TOKEN")
# A `manage.py worker`'s own /metrics (0: none), for workers not sharing the web's
# PROMETHEUS_MULTIPROC_DIR (another container or machine), and the address it listens on.
CRCR_WORKER_METRICS_PORT = envint("CRCR_WORKER_METRICS_PORT", 0, minimum=0)
CRCR_WORKER_METRICS_ADDR = envstr("CRCR_WORKER_METRICS_ADDR", "127.0.0.1")
# /readyz: a periodic job is overdue when it has not succeeded for its interval plus this; a
# worker whose heartbeat (written every CRCR_HEARTBEAT_EVERY seconds) is older than
# CRCR_WORKER_STALE is reported stale.
CRCR_PERIODIC_GRACE = envint("CRCR_PERIODIC_GRACE", 120, minimum=10)
CRCR_HEARTBEAT_EVERY = envint("CRCR_HEARTBEAT_EVERY", 10, minimum=1)
CRCR_WORKER_STALE = envint("CRCR_WORKER_STALE", 60, minimum=5)
# Level readiness (shown on an L2+ repo's page): thresholds and windows.
HUD_READY_PASS_RATE = envfloat("HUD_READY_PASS_RATE", 0.90, minimum=0.0)
HUD_READY_MAX_TIMEOUT_RATE = envfloat("HUD_READY_MAX_TIMEOUT_RATE", 0.01, minimum=0.0)
HUD_READY_MAX_P50_END_TO_END = envint("HUD_READY_MAX_P50_END_TO_END", 3 * 3600, minimum=60)
HUD_READY_MAX_AVG_QUEUE = envint("HUD_READY_MAX_AVG_QUEUE", 30 * 60, minimum=60)
HUD_READY_MIN_DAYS_AT_L2 = envint("HUD_READY_MIN_DAYS_AT_L2", 30, minimum=0)
HUD_READY_PROMOTION_DAYS = envint("HUD_READY_PROMOTION_DAYS", 14, minimum=1)
HUD_READY_DEMOTION_DAYS = envint("HUD_READY_DEMOTION_DAYS", 7, minimum=1)
# Level automation (hud/levels.py): how often the worker proposes level changes (0: never),
# and whether a proposed demotion stands a temporary demotion at once.
CRCR_LEVELS_EVERY = envint("CRCR_LEVELS_EVERY", 86400)
CRCR_LEVELS_AUTO_DEMOTE = envbool("CRCR_LEVELS_AUTO_DEMOTE", False)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "hud.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CRCR HUD API",
    "DESCRIPTION": "Downstream CI results of upstream PRs, as the /crcr pages show them.",
    "VERSION": "1",
    "SWAGGER_UI_DIST": "SIDECAR",  # served from our static files: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
}
