# A slim runtime image of the aifleet controller.
# Build: docker build -t aifleet .   Run: docker run aifleet run --help
# (CI has no Docker engine; `make package` runs the same wheel build and install.)

FROM python:3.11-slim AS build
WORKDIR /src
# Locked, hash-checked installs (requirements/README.md): the build tools first, then
# the wheel of aifleet alone, built without fetching anything unlocked.
COPY requirements/runtime.lock ./requirements/
RUN python -m pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY fleet ./fleet
COPY workloads ./workloads
COPY clusters ./clusters
COPY controllers ./controllers
RUN python -m pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python:3.11-slim
# OCI annotations (github.com/opencontainers/image-spec annotations.md keys); version
# and revision are set by the build: --build-arg VERSION=... --build-arg REVISION=...
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="aifleet" \
      org.opencontainers.image.description="Multi-cluster GitOps fleet controller for AI workloads" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# pygit2's wheel bundles libgit2; nothing else is needed from the OS.
RUN useradd --create-home --uid 10001 fleet
COPY requirements/runtime.lock /tmp/runtime.lock
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --require-hashes --no-deps -r /tmp/runtime.lock \
 && python -m pip install --no-cache-dir --no-deps /wheels/*.whl \
 && python -m pip check && rm -rf /wheels /tmp/runtime.lock \
 && install -d -o fleet -g fleet -m 0700 /home/fleet/.aifleet
USER 10001
WORKDIR /home/fleet
# --state-dir (default .aifleet): the Git mirror and the last plan. Mount a volume here
# so that a restart during a cluster outage keeps that cluster's workloads (see
# docs/controller.md, restart safety).
VOLUME ["/home/fleet/.aifleet"]
# In a container the controller must be reachable by probes and scrapes: listen on all
# interfaces (the CLI's default for a local run stays 127.0.0.1:8080). No HEALTHCHECK:
# Kubernetes probes /healthz and /readyz (deploy/helm/aifleet).
ENV FLEET_LISTEN=0.0.0.0:8080 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["fleet"]
CMD ["--help"]
