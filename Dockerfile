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
EXPOSE 8080
ENTRYPOINT ["fleet"]
CMD ["--help"]
