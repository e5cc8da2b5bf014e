# syntax=docker/dockerfile:1
# Tapeline production image.
#
#   docker build -t tapeline .
#   docker run -p 8000:8000 -v tapeline-data:/data tapeline
#
# Two stages: `build` makes a wheel of the project and a virtual environment at
# /opt/venv; `runtime` is the bare base image plus that environment, a non-root
# user and /data (the default SQLite location) as a volume. BASE_IMAGE may be any
# image with Python >= 3.11 and its venv module (`python3 -m venv` must work):
# by default the official slim image of Python 3.12.12 on Debian bookworm, pinned
# by digest (a rebuild gets the same base); `make test-container` passes a Debian
# bookworm image it builds itself with debootstrap.
ARG BASE_IMAGE

FROM ${BASE_IMAGE:-python:3.12.12-slim-bookworm@sha256:593bd06efe90efa80dc4eee3948be7c0fde4134606dd40d8dd8dbcade98e669c} AS base

############################################################ build
FROM base AS build

# Optional package index for pip (empty: pip's default). Only this stage sees them.
ARG PIP_INDEX_URL="" PIP_EXTRA_INDEX_URL=""

# Dependencies first, in their own layer: rebuilt only when pyproject.toml changes.
# NumPy's own test suite (17 MB) is dropped.
COPY pyproject.toml /src/
RUN set -eu; \
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_DEFAULT_TIMEOUT=120 PIP_ROOT_USER_ACTION=ignore; \
    [ -n "$PIP_INDEX_URL" ] || unset PIP_INDEX_URL; \
    [ -n "$PIP_EXTRA_INDEX_URL" ] || unset PIP_EXTRA_INDEX_URL; \
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then export PIP_CERT=/etc/ssl/certs/ca-certificates.crt; fi; \
    python3 -m venv /opt/venv; \
    python3 -m venv /opt/buildtools; \
    /opt/buildtools/bin/pip install "setuptools>=69" wheel; \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' > /src/requirements.txt; \
    /opt/venv/bin/pip install --requirement /src/requirements.txt; \
    find /opt/venv/lib/python3*/site-packages/numpy -type d -name tests -prune -exec rm -rf {} +

# Then the project itself (the context is only what .dockerignore lets through): a wheel,
# installed into the environment without its (already present) dependencies.
COPY . /src/
RUN set -eu; \
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore; \
    cd /src; \
    /opt/buildtools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .; \
    /opt/venv/bin/pip install --no-deps /wheels/tapeline-*.whl; \
    /opt/venv/bin/pip check; \
    /opt/venv/bin/tapeline --help > /dev/null; \
    /opt/venv/bin/pip uninstall --yes pip setuptools wheel

############################################################ runtime
FROM base AS runtime

# The service's user, uid/gid 10001. A plain passwd/group entry works on any base (minimal
# ones have no useradd). /data belongs to it; /opt/venv stays root's, read-only to it.
RUN set -eu; \
    grep -q '^tapeline:' /etc/group || echo "tapeline:x:10001:" >> /etc/group; \
    grep -q '^tapeline:' /etc/passwd || \
        echo "tapeline:x:10001:10001:Tapeline:/data:/usr/sbin/nologin" >> /etc/passwd; \
    mkdir -p /data; \
    chown 10001:10001 /data; \
    chmod 0750 /data

COPY --from=build /opt/venv /opt/venv

LABEL org.opencontainers.image.title="tapeline" \
      org.opencontainers.image.description="REST training microservice on its own NumPy autodiff engine" \
      org.opencontainers.image.licenses="Apache-2.0"

# Every setting is a TAPELINE_* variable (see service/config.py); these are the image's defaults.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TAPELINE_HOST=0.0.0.0 \
    TAPELINE_PORT=8000 \
    TAPELINE_DATABASE_URL=sqlite:////data/tapeline.db \
    TAPELINE_ALLOWED_HOSTS=localhost,127.0.0.1

VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
EXPOSE 8000

# No curl in the image: the health check is the image's own Python.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TAPELINE_PORT', '8000'), timeout=3)"]

# `tapeline serve` binds TAPELINE_HOST:TAPELINE_PORT, trusts X-Forwarded-* headers
# (proxy_headers) and, on SIGTERM (the default stop signal), gives open requests 5 s
# to finish, then exits.
CMD ["/opt/venv/bin/tapeline", "serve"]
