"""The deployment files (Dockerfile, compose.yaml, deploy/) are valid, and agree with the
settings, the Makefile's Python and each other. No Docker engine runs here: hadolint lints the
Dockerfile, the compose-spec schema (as check-jsonschema ships it) validates the compose file,
and the image's own file tree is laid out from the Dockerfile's COPY lines and run."""

import ast
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.crcr_site.support import bare_env
from tests.paths import PYTHON, ROOT

BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
RELAY_SERVICES = ("migrate", "web", "worker")


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: pip install -r requirements-dev.txt")
    return str(path)


def run(*argv: str, cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, timeout=120, check=False, **kwargs
    )


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each line, continuations joined, comments left out."""
    joined = re.sub(r"\\\n", " ", dockerfile)
    found = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the image's last stage, the one that runs."""
    steps = instructions(DOCKERFILE.read_text())
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # the safe loader merges `<<: *relay`


def interpolated(value: str) -> str:
    """Compose's `${NAME:-default}` with nothing set: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def settings_variables() -> set[str]:
    """Every environment variable crcr_site/settings.py reads, through its env* helpers (a
    secret also as NAME_FILE)."""
    tree = ast.parse((ROOT / "crcr_site" / "settings.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id.startswith("env")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(name := node.args[0].value, str)
        ):
            names.add(name)
            if node.func.id == "envsecret":
                names.add(f"{name}_FILE")
    return names


# --- the Dockerfile -------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint_with_nothing_to_say():
    result = run(tool("hadolint"), "--failure-threshold", "info", "--no-color", str(DOCKERFILE))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_hadolint_does_find_what_it_looks_for(tmp_path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN pip install requests\n")

    result = run(tool("hadolint"), "--no-color", str(careless))

    assert result.returncode == 1
    assert "DL3007" in result.stdout  # the latest tag
    assert "DL3013" in result.stdout  # an unpinned pip install


def test_the_image_runs_a_python_the_makefile_would_take():
    (version,) = re.findall(r"^ARG PYTHON_VERSION=(\S+)$", DOCKERFILE.read_text(), re.M)
    image = tuple(int(part) for part in version.split("."))
    find_python = (ROOT / "scripts" / "find-python").read_text()
    (minimum,) = re.findall(r"sys\.version_info >= \((\d+), (\d+)\)", find_python)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())

    assert image >= tuple(int(part) for part in minimum)
    assert project["project"]["requires-python"] == f">={minimum[0]}.{minimum[1]}"
    assert f"python{version}" in find_python  # one of the names it looks for on PATH
    assert image >= tuple(int(p) for p in project["tool"]["mypy"]["python_version"].split("."))


def test_the_image_runs_as_an_unprivileged_user_and_collects_static_files_at_build():
    stage = runtime_stage()
    users = [args for word, args in stage if word == "USER"]
    runs = [args for word, args in stage if word == "RUN"]
    (command,) = [args for word, args in stage if word == "CMD"]

    assert len([word for word, _ in instructions(DOCKERFILE.read_text()) if word == "FROM"]) >= 2
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")
    assert any("manage.py collectstatic --noinput" in args for args in runs)
    assert ("USER", users[-1]) in stage[stage.index(("RUN", runs[-1])) :]  # after the build steps
    assert command == '["gunicorn", "--config", "deploy/gunicorn.conf.py"]'


def _lay_out_the_image(app: Path) -> None:
    """The runtime stage's COPY lines from the build context, into `app` (its WORKDIR)."""
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for word, args in runtime_stage():
        if word != "COPY" or args.startswith("--from"):
            continue
        *sources, target = args.split()
        for source in sources:
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
            destination = app / target if not target.endswith("/") else app / target / source
            destination.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(
                    ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(ROOT / source, destination)


def test_the_files_the_image_copies_are_all_the_product_needs(tmp_path):
    app = tmp_path / "app"
    _lay_out_the_image(app)
    env = bare_env(tmp_path, CRCR_SANDBOX="false")  # as the image's ENV sets it

    collected = run(PYTHON, "manage.py", "collectstatic", "--noinput", cwd=app, env=env)
    checked = run(PYTHON, "manage.py", "check", cwd=app, env=env)
    served = run(
        PYTHON, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py", "--check-config",
        cwd=app, env=env,
    )  # fmt: skip

    assert collected.returncode == 0, collected.stderr
    assert (app / "staticfiles" / "crcr_site" / "admin.css").exists()
    assert (app / "staticfiles" / "hud" / "hud.js").exists()
    assert checked.returncode == 0, checked.stderr
    assert served.returncode == 0, served.stdout + served.stderr
    assert not (app / "tests").exists()
    assert not (app / "sandbox").exists()


def test_nothing_local_or_secret_reaches_the_build_context():
    ignored = set((ROOT / ".dockerignore").read_text().split())

    for local in (".git", ".venv", ".env", "crcr.sqlite3*", "crcr-chdb", "var", "deploy/secrets"):
        assert local in ignored


# --- gunicorn -------------------------------------------------------------------------------


def test_gunicorn_lets_no_request_outlive_the_orphan_window(settings, tmp_path):
    result = run(
        PYTHON, "-m", "gunicorn", "--config", "deploy/gunicorn.conf.py", "--print-config",
        env=bare_env(tmp_path),
    )  # fmt: skip
    config = dict(re.findall(r"^(\w+)\s+= (.*)$", result.stdout, re.M))

    assert result.returncode == 0, result.stderr
    assert config["wsgi_app"] == "crcr_site.wsgi:application"
    assert config["bind"] == "['0.0.0.0:8000']"
    # A transition older than CRCR_ORPHAN_AFTER is taken for a dead process's: no request lasts
    # that long.
    assert int(config["timeout"]) < settings.CRCR_ORPHAN_AFTER


def test_the_tests_serve_the_relay_with_the_deployments_gunicorn_configuration():
    from tests.servers import GUNICORN_CONFIG

    assert GUNICORN_CONFIG == ROOT / "deploy" / "gunicorn.conf.py"


# --- compose --------------------------------------------------------------------------------


def test_the_compose_file_holds_to_the_compose_specification():
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_refuses_a_misspelt_key(tmp_path):
    careless = tmp_path / "compose.yaml"
    careless.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_perod:"))

    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(careless))

    assert result.returncode == 1
    assert "stop_grace_perod" in result.stdout


def test_compose_runs_web_worker_postgresql_redis_and_clickhouse():
    services = compose()["services"]

    assert {"web", "worker", "postgres", "redis", "clickhouse"} <= set(services)
    assert "command" not in services["web"]  # the image's: gunicorn with deploy/gunicorn.conf.py
    assert services["worker"]["command"] == ["python", "manage.py", "worker"]
    assert "manage.py migrate" in " ".join(services["migrate"]["command"])
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }


def test_every_name_compose_refers_to_is_declared():
    spec = compose()
    services = spec["services"]

    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        assert set(service.get("secrets", [])) <= set(spec["secrets"]), name
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in spec["volumes"], name
    for secret in spec["secrets"].values():
        assert secret["file"].startswith("deploy/secrets/")


def test_every_variable_compose_gives_the_relay_is_one_the_settings_read():
    known = settings_variables()

    for name in RELAY_SERVICES:
        assert set(compose()["services"][name]["environment"]) - known == set(), name


def test_the_secrets_compose_names_are_the_ones_deploy_make_secrets_makes(tmp_path):
    made = run(str(ROOT / "deploy" / "make-secrets"), str(tmp_path / "secrets"))
    again = run(str(ROOT / "deploy" / "make-secrets"), str(tmp_path / "secrets"))
    files = {path.name for path in (tmp_path / "secrets").iterdir()}

    assert made.returncode == 0, made.stderr
    assert files == set(compose()["secrets"])
    assert again.stdout == ""  # what exists is kept


def test_the_relay_reads_the_compose_environment_as_the_services_are_set_up(tmp_path):
    """Compose's environment and the secrets deploy/make-secrets writes, given to the settings:
    the relay reaches PostgreSQL, Redis and ClickHouse as the compose file sets them up."""
    secrets = tmp_path / "secrets"
    assert run(str(ROOT / "deploy" / "make-secrets"), str(secrets)).returncode == 0
    spec = compose()
    services = spec["services"]
    environment = {
        name: interpolated(str(value)).replace("/run/secrets/", f"{secrets}/")
        for name, value in services["web"]["environment"].items()
    }
    env = bare_env(tmp_path, DJANGO_SETTINGS_MODULE="crcr_site.settings") | environment
    del env["DATABASE_URL"]  # compose gives DATABASE_URL_FILE
    script = (
        "import json; from django.conf import settings as s; db = s.DATABASES['default']; "
        "print(json.dumps([db['ENGINE'], db['HOST'], db['PORT'], db['USER'], db['NAME'], "
        "s.REDIS_URL, s.HUD_BACKEND, s.HUD_CLICKHOUSE_URL, s.CRCR_SANDBOX, "
        f"s.SECRET_KEY == (open({str(secrets / 'django_secret_key')!r}).read().strip())]))"
    )

    result = run(PYTHON, "-c", script, env=env)

    assert result.returncode == 0, result.stderr
    engine, host, port, user, name, redis_url, backend, clickhouse_url, sandbox, keyed = json.loads(
        result.stdout
    )
    postgres = services["postgres"]["environment"]
    assert (engine, host, port) == ("crcr_site.postgresql", "postgres", 5432)
    assert (user, name) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert urlsplit(redis_url).hostname == "redis"
    clickhouse = urlsplit(clickhouse_url)
    assert backend == "clickhouse"
    assert (clickhouse.hostname, clickhouse.port) == ("clickhouse", 8123)
    assert clickhouse.username == services["clickhouse"]["environment"]["CLICKHOUSE_USER"]
    assert clickhouse.path == "/" + services["clickhouse"]["environment"]["CLICKHOUSE_DB"]
    assert sandbox is False
    assert keyed is True
