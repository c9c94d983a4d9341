# The aifleet controller's image.
# Build: docker build -t aifleet .   Run: docker run aifleet run --help
# (CI has no Docker engine; `make package` runs the same locked install of the wheel, and
# tests/unit/test_dockerfile.py checks this file's rules.)
#
# The base is pinned by digest, so a rebuild gets the same OS and CPython until the pin
# is moved on purpose. The digest below is a published python:3.11-slim-bookworm image
# (multi-arch index, CPython 3.11.10 on Debian 12), as seen in github.com/nalabelle/build
# images/digests.Dockerfile (kept current by Renovate) and in other public Dockerfiles;
# it was not resolved from this machine, which cannot reach Docker Hub. Whoever can:
# `make base-image-digest` re-resolves python:3.11-slim-bookworm with
# `docker buildx imagetools inspect` and rewrites this line (scripts/pin_base_image.py).
ARG PYTHON_BASE=python:3.11-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

# --- build: the locked dependencies and the aifleet wheel, in a venv copied as a whole.
FROM ${PYTHON_BASE} AS build
WORKDIR /src
# Locked, hash-checked installs (requirements/README.md), wheels only: nothing is
# compiled, so neither stage needs a compiler (the slim base has none).
COPY requirements/runtime.lock ./requirements/
RUN python -m venv /opt/aifleet \
 && /opt/aifleet/bin/python -m pip install --no-cache-dir --require-hashes --no-deps \
      --only-binary=:all: -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY fleet ./fleet
COPY workloads ./workloads
COPY clusters ./clusters
COPY controllers ./controllers
# The wheel of aifleet alone, built with the locked setuptools (nothing fetched).
RUN /opt/aifleet/bin/python -m pip wheel --no-cache-dir --no-deps --no-build-isolation \
      --wheel-dir /wheels . \
 && /opt/aifleet/bin/python -m pip install --no-cache-dir --no-deps /wheels/*.whl \
 && /opt/aifleet/bin/python -m pip check

# --- runtime: the base, the venv, a non-root user. No build tools, no HEALTHCHECK.
FROM ${PYTHON_BASE}
# OCI annotations (github.com/opencontainers/image-spec annotations.md keys); version,
# revision and created are set by the build: --build-arg VERSION=... REVISION=... CREATED=...
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG PYTHON_BASE
LABEL org.opencontainers.image.title="aifleet" \
      org.opencontainers.image.description="Multi-cluster GitOps fleet controller for AI workloads" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_BASE}"
# pygit2's wheel bundles libgit2; nothing else is needed from the OS. The venv keeps
# each package's dist-info (name, version, RECORD of files), which SBOM scanners read.
COPY --from=build /opt/aifleet /opt/aifleet
RUN groupadd --gid 10001 fleet \
 && useradd --create-home --uid 10001 --gid 10001 fleet \
 && install -d -o fleet -g fleet -m 0700 /home/fleet/.aifleet
USER 10001:10001
WORKDIR /home/fleet
# --state-dir (default .aifleet): the Git mirror and the last plan. Mount a volume here
# so that a restart during a cluster outage keeps that cluster's workloads (see
# docs/controller.md, restart safety).
VOLUME ["/home/fleet/.aifleet"]
# In a container the controller must be reachable by probes and scrapes: listen on all
# interfaces (the CLI's default for a local run stays 127.0.0.1:8080). No HEALTHCHECK:
# Kubernetes probes /healthz and /readyz (deploy/helm/aifleet).
ENV PATH=/opt/aifleet/bin:$PATH \
    FLEET_LISTEN=0.0.0.0:8080 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["fleet"]
CMD ["--help"]
