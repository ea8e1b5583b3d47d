# syntax=docker/dockerfile:1
# One image for every ioc-stream component; the command picks it:
#   docker run ioc-stream worker | writer | gateway | notifier | ingest-api | simulate | topics create | db migrate
# Build:  docker build -t ioc-stream:0.1.0 .
# Cluster mode only: set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (deploy/README.md).

ARG PYTHON_VERSION=3.11

# --- build: wheels for the package and its dependencies, nothing else ---------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY foundation ./foundation
COPY ioc ./ioc
COPY streams ./streams
COPY producers ./producers
COPY consumers ./consumers
COPY alerts ./alerts
RUN python -m pip wheel --wheel-dir /wheels .

# --- runtime: slim, non-root, no compiler, no source tree ---------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IOC_STATE_DIR=/var/lib/ioc \
    IOC_LOG_LEVEL=info
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels ioc-stream \
    && groupadd --system --gid 10001 ioc \
    && useradd --system --uid 10001 --gid ioc --home-dir /var/lib/ioc --shell /usr/sbin/nologin ioc \
    && install -d -o ioc -g ioc -m 0750 /var/lib/ioc
USER 10001:10001
WORKDIR /var/lib/ioc
# gateway (wall + WebSocket), ingest API, worker/notifier/writer metrics
EXPOSE 8080 8081 9101 9104 9105
# Stop on SIGTERM: every component shuts down cleanly on it (commits, flushes, closes).
STOPSIGNAL SIGTERM
ENTRYPOINT ["ioc"]
CMD ["--help"]
