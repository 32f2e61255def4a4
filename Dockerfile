# The relay's image: the web processes by default (gunicorn, deploy/gunicorn.conf.py); the same
# image runs `python manage.py worker` and every other command (compose.yaml, docs/operations.md).
# The Python version is one scripts/find-python accepts (3.12 or newer).
ARG PYTHON_VERSION=3.13

# --- build: the virtual environment, with a compiler for what has no wheel (gunicorn-h1c) ----
FROM python:${PYTHON_VERSION}-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY requirements.txt ./
# Every runtime requirement but chdb (ClickHouse inside the process: 0.5 GB, for the demo and
# the tests); the image reaches ClickHouse as a server (HUD_CLICKHOUSE_URL=http(s)://...).
RUN grep -v '^chdb==' requirements.txt > requirements-image.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r requirements-image.txt

# --- runtime: the venv and the product's code, run as an unprivileged user ----------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CRCR_SANDBOX=false
RUN groupadd --system --gid 10001 crcr \
    && useradd --system --uid 10001 --gid crcr --home-dir /app --shell /usr/sbin/nologin crcr
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY manage.py ./
COPY crcr_site ./crcr_site
COPY allowlist ./allowlist
COPY relay ./relay
COPY hud ./hud
COPY deploy/gunicorn.conf.py ./deploy/gunicorn.conf.py
# Static files collected once, here, into STATIC_ROOT (/app/staticfiles), which WhiteNoise
# serves; owned by root, like the code, so the relay's user cannot change what it serves.
RUN python manage.py collectstatic --noinput --verbosity 0
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "--config", "deploy/gunicorn.conf.py"]
