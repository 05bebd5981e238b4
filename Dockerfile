# syntax=docker/dockerfile:1.7
# The Suanli operator image: `suanli run` as a non-root user on a read-only root filesystem.
#
#   docker build -t suanli:dev .
#   docker run --rm suanli:dev --help
#   make image          # the same with podman, on a host without Docker or registry access (docs/image.md)
#
# Two stages: the builder turns the project and every dependency into wheels, the dependencies
# exactly as requirements.lock pins them (hash-checked; `make lock` writes it, `make venv` installs
# from it too); the final stage installs only those wheels (no compiler, no build backend, no pip
# left behind).
# The base is pinned to an exact Python patch release on Debian bookworm. For releases,
# pin the digest too:  PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest of the index>
# (`docker buildx imagetools inspect python:3.11.13-slim-bookworm` prints it).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# A folder of the lock's wheels mounted into the build (podman build -v DIR:/wheelhouse:ro
# --build-arg PIP_WHEELHOUSE=/wheelhouse, as `make image` does): pip then reads only that folder
# and the build needs no network. Empty (the default): pip downloads from the package index.
ARG PIP_WHEELHOUSE=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
# Every pin of the lock, as the wheel whose hash the lock records: wheels only, so nothing is
# compiled here. The lock also pins make's tools (pytest, ruff ...); they stay in this stage.
RUN python -m pip wheel --require-hashes --only-binary=:all: --wheel-dir /wheels \
        ${PIP_WHEELHOUSE:+--no-index --find-links="$PIP_WHEELHOUSE"} -r requirements.lock
COPY operator ./operator
# The project's own wheel, built with the locked setuptools from /wheels: nothing else is fetched.
RUN python -m pip wheel --no-deps --no-index --find-links=/wheels --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG SUANLI_UID=65532
LABEL org.opencontainers.image.title="suanli" \
      org.opencontainers.image.description="Kubernetes operator placing accelerator jobs across compute centers by accelerator fit, data locality and energy" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib
# Installs only the wheels built above (--no-index): one version of each, requirements.lock's.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels suanli \
    && python -m pip uninstall -y pip setuptools wheel \
    && groupadd --system --gid "${SUANLI_UID}" suanli \
    && useradd --system --uid "${SUANLI_UID}" --gid "${SUANLI_UID}" --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin suanli
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["suanli"]
CMD ["run"]
