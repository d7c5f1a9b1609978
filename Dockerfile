# syntax=docker/dockerfile:1
# perptrader: one image for every service (collector, trader, API, notifier); the
# command picks the service (see compose.yaml and docs/deploy.md).
#
# Stage 1 builds the wheel and a virtualenv: torch==2.13.0 (CPU build, from PyTorch's
# CPU index) goes in first and pinned, as the Makefile does, so that nothing later pulls
# a CUDA build of several GB; everything else is installed under
# requirements/constraints.txt. Stage 2 copies only the virtualenv and runs as a
# non-root user. Not built here: these machines have no Docker engine (docs/deploy.md).

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# the heavy, rarely changing layer first: torch CPU, then the pinned dependencies
COPY requirements/constraints.txt requirements/constraints.txt
RUN pip install --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple \
        -c requirements/constraints.txt "torch==2.13.0+cpu"
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install -c requirements/constraints.txt /wheels/perptrader-*.whl \
    && pip check

FROM ${PYTHON_IMAGE} AS runtime
# libgomp1: OpenMP runtime of LightGBM / XGBoost / CatBoost wheels; tini: PID 1 that
# forwards SIGTERM (the services stop cleanly on `docker compose stop`)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tini \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 perptrader \
    && useradd --system --uid 10001 --gid perptrader --home-dir /data \
       --shell /usr/sbin/nologin perptrader \
    && mkdir -p /data/secrets \
    && chown -R perptrader:perptrader /data \
    && chmod 700 /data/secrets
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PERPTRADER__DATA_DIR=/data \
    NUMBA_CACHE_DIR=/tmp/numba \
    MPLCONFIGDIR=/tmp/matplotlib \
    RAY_USAGE_STATS_ENABLED=0
WORKDIR /data
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
# a liveness probe every service passes (compose.yaml sets a sharper one per service)
HEALTHCHECK --interval=30s --timeout=20s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import perptrader.config as c; c.load_settings()"]
ENTRYPOINT ["tini", "--", "perptrader"]
CMD ["--help"]
