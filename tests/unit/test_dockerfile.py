"""The Dockerfile's rules, read from the file (no Docker engine is needed: CI has none).

Multi-stage; the runtime stage installs only from the hash-checked lock, runs as a
numeric non-root user, carries OCI labels, listens on every interface (probes and
scrapes come from outside the container) and has no HEALTHCHECK (Kubernetes probes).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def runtime_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (w, _) in enumerate(steps) if w == "FROM")
    return steps[last_from:]


def test_the_image_is_multi_stage_and_installs_from_the_lock() -> None:
    steps = instructions()
    assert sum(w == "FROM" for w, _ in steps) >= 2
    runs = " ".join(a for w, a in runtime_stage() if w == "RUN")
    assert "--require-hashes" in runs and "runtime.lock" in runs
    assert "COPY --from=build /wheels /wheels" in " ".join(
        f"{w} {a}" for w, a in runtime_stage())


def test_the_runtime_runs_as_a_numeric_non_root_user_with_oci_labels() -> None:
    stage = runtime_stage()
    users = [a for w, a in stage if w == "USER"]
    assert users and users[-1].isdigit() and int(users[-1]) != 0
    labels = " ".join(a for w, a in stage if w == "LABEL")
    for key in ("title", "version", "revision", "licenses", "description"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_the_image_listens_on_all_interfaces_and_has_no_healthcheck() -> None:
    stage = runtime_stage()
    assert not [w for w, _ in instructions() if w == "HEALTHCHECK"]
    env = " ".join(a for w, a in stage if w == "ENV")
    assert "FLEET_LISTEN=0.0.0.0:8080" in env
    assert [a for w, a in stage if w == "EXPOSE"] == ["8080"]
    # The chart's port is the image's.
    values = yaml.safe_load((ROOT / "deploy/helm/aifleet/values.yaml").read_text())
    assert values["containerPort"] == 8080
    # The image's UID is the one the chart runs as.
    user = [a for w, a in stage if w == "USER"][-1]
    assert values["podSecurityContext"]["runAsUser"] == int(user)
