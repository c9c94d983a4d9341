"""The image's rules, checked on the Dockerfile itself (no Docker engine runs in CI).

- The base is pinned by digest in every stage; re-pinning rewrites only that line.
- The final stage runs as a non-root user, installs nothing from the OS (no compilers,
  no package manager), has no HEALTHCHECK (Kubernetes probes), listens on 0.0.0.0 and
  carries the OCI labels; every pip install of dependencies is hash-checked from the
  lock, wheels only.
- The simulator is in the wheel but not on the runtime's import graph: `fleet run`
  (its parser, the Manager it starts) imports no `clusters.sim`; `fleet demo` does.

Each rule is a function of the Dockerfile's text, so each is shown to catch the
mistake it is about (a mutated copy), not only to pass on the real file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
sys.path.insert(0, str(ROOT / "scripts"))
import pin_base_image  # noqa: E402

PINNED = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")
COMPILERS = ("gcc", "g++", "clang", "build-essential", "cc ", "make ")


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments out."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not pending:
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if pending.strip():
            keyword, _, rest = pending.strip().partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each stage (the global ARGs before the first FROM: stage 0)."""
    result: list[list[tuple[str, str]]] = [[]]
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        result[-1].append(ins)
    return result


def problems(text: str) -> list[str]:
    """Every rule the Dockerfile breaks, one line each (empty: none)."""
    found: list[str] = []
    globals_, *built = stages(text)
    args = dict(a.partition("=")[::2] for k, a in globals_ if k == "ARG")
    for stage in built:
        image = stage[0][1].split()[0]
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), image)
        stage_names = {s[0][1].split()[-1] for s in built if " AS " in s[0][1].upper()}
        if image not in stage_names and not PINNED.match(ref):
            found.append(f"FROM {image}: the base is not pinned by digest")
    final = built[-1] if built else []
    users = [a for k, a in final if k == "USER"]
    uid = users[-1].split(":")[0] if users else "root"
    # Numeric: the kubelet can only check runAsNonRoot against a numeric USER.
    if not uid.isdigit() or int(uid) == 0:
        found.append("the final stage does not run as a numeric non-root USER")
    if any(k == "HEALTHCHECK" for k, _ in instructions(text)):
        found.append("HEALTHCHECK: Kubernetes probes /healthz and /readyz instead")
    for k, a in final:
        if k == "RUN" and re.search(r"\b(apt-get|apt|apk|dnf|yum)\b", a):
            found.append(f"the final stage installs OS packages: RUN {a[:60]}")
        if k == "RUN" and "pip install" in a:
            found.append("the final stage runs pip (the build stage's venv is copied)")
    for stage in built:
        for k, a in stage:
            if k == "RUN" and any(c in a + " " for c in COMPILERS):
                found.append(f"a compiler or build tool is installed: RUN {a[:60]}")
            for install in re.findall(r"pip install[^&]*", a) if k == "RUN" else ():
                local_wheel = "/wheels/" in install and "--no-deps" in install
                if not local_wheel and not ("--require-hashes" in install
                                            and "--only-binary=:all:" in install
                                            and "runtime.lock" in install):
                    found.append(f"pip install not hash-checked from the lock, wheels "
                                 f"only: {install.strip()[:70]}")
    env = " ".join(a for k, a in final if k == "ENV")
    if "FLEET_LISTEN=0.0.0.0:" not in env:
        found.append("FLEET_LISTEN is not 0.0.0.0 in the image")
    labels = " ".join(a for k, a in final if k == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses", "base.name"):
        if f"org.opencontainers.image.{key}=" not in labels:
            found.append(f"OCI label org.opencontainers.image.{key} is missing")
    return found


def test_the_dockerfile_keeps_every_rule() -> None:
    text = DOCKERFILE.read_text()
    assert problems(text) == []
    assert len(stages(text)) == 3  # global ARGs, build, runtime: multi-stage
    assert "COPY --from=build /opt/aifleet /opt/aifleet" in text


def test_the_chart_runs_the_image_as_it_is_built() -> None:
    """The chart's port and UID are the image's."""
    import yaml

    final = stages(DOCKERFILE.read_text())[-1]
    values = yaml.safe_load((ROOT / "deploy/helm/aifleet/values.yaml").read_text())
    assert [a for k, a in final if k == "EXPOSE"] == [str(values["containerPort"])]
    user = [a for k, a in final if k == "USER"][-1]
    assert int(user.split(":")[0]) == values["podSecurityContext"]["runAsUser"]
    assert int(user.split(":")[1]) == values["podSecurityContext"]["runAsGroup"]
    runs = " ".join(a for k, a in final if k == "RUN")  # the user and group exist as such
    uid, gid = user.split(":")
    assert f"groupadd --gid {gid} fleet" in runs and f"--uid {uid} --gid {gid} fleet" in runs


BASE = "ARG PYTHON_BASE="
MUTATIONS: dict[str, tuple[Callable[[str], str], str]] = {
    "unpinned base": (lambda t: re.sub(r"(ARG PYTHON_BASE=\S+)@sha256:\w+", r"\1", t),
                      "not pinned by digest"),
    "unpinned FROM": (lambda t: t.replace("FROM ${PYTHON_BASE}\n", "FROM python:3.11-slim\n"),
                      "FROM python:3.11-slim"),
    "root user": (lambda t: t.replace("USER 10001:10001", "USER 0"), "non-root USER"),
    "named user": (lambda t: t.replace("USER 10001:10001", "USER fleet"), "non-root USER"),
    "no user": (lambda t: t.replace("USER 10001:10001\n", ""), "non-root USER"),
    "healthcheck": (lambda t: t.replace("EXPOSE 8080", "EXPOSE 8080\nHEALTHCHECK CMD true"),
                    "HEALTHCHECK"),
    "no hashes": (lambda t: t.replace("--require-hashes ", "", 1), "not hash-checked"),
    "sdists allowed": (lambda t: t.replace("--only-binary=:all: ", "", 1),
                       "not hash-checked"),
    "compiler": (lambda t: t.replace("RUN groupadd", "RUN apt-get install -y gcc && groupadd"),
                 "installs OS packages"),
    "pip in runtime": (lambda t: t.replace(
        "RUN groupadd", "RUN python -m pip install --require-hashes --only-binary=:all: "
        "-r runtime.lock && groupadd"), "runs pip"),
    "loopback listen": (lambda t: t.replace("FLEET_LISTEN=0.0.0.0:8080",
                                            "FLEET_LISTEN=127.0.0.1:8080"), "FLEET_LISTEN"),
    "no revision label": (lambda t: re.sub(r'\s*org\.opencontainers\.image\.revision=\S+ \\',
                                           "", t), "image.revision"),
}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=list(MUTATIONS))
def test_each_rule_catches_the_mistake_it_is_about(mutation: str) -> None:
    change, says = MUTATIONS[mutation]
    text = DOCKERFILE.read_text()
    mutated = change(text)
    assert mutated != text, "the mutation no longer applies to the Dockerfile"
    found = problems(mutated)
    assert any(says in p for p in found), found


def test_repinning_rewrites_only_the_base_line() -> None:
    text = DOCKERFILE.read_text()
    digest = "sha256:" + "ab" * 32
    new = pin_base_image.pin(text, "python:3.11-slim-bookworm", digest)
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines(), strict=True)
               if a != b]
    assert changed == [(f"{BASE}{pin_base_image.base_of(text)}",
                        f"{BASE}python:3.11-slim-bookworm@{digest}")]
    assert problems(new) == []
    with pytest.raises(ValueError, match="not a sha256"):
        pin_base_image.pin(text, "python:3.11-slim-bookworm", "latest")


def test_the_pin_check_fails_on_a_tag(tmp_path: Path) -> None:
    unpinned = tmp_path / "Dockerfile"
    unpinned.write_text(f"{BASE}python:3.11-slim\nFROM ${{PYTHON_BASE}}\n")
    assert pin_base_image.main(["--check", "--dockerfile", str(unpinned)]) == 1
    assert pin_base_image.main(["--check", "--dockerfile", str(DOCKERFILE)]) == 0
    # Written from a digest given by hand (no registry needed), then pinned.
    assert pin_base_image.main(["--dockerfile", str(unpinned),
                                "--digest", "sha256:" + "0" * 64]) == 0
    assert pin_base_image.main(["--check", "--dockerfile", str(unpinned)]) == 0


SIM_MODULES = ("clusters.sim", "controllers.demo")
PROBE = """
import contextlib, io, sys
sys.argv = ["fleet"] + sys.argv[1:]
from controllers.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
for module in {extra}:
    __import__(module)
print(" ".join(sorted(m for m in sys.modules if m.startswith({sim!r}))))
"""


def loaded_after(argv: list[str], extra: tuple[str, ...] = ()) -> set[str]:
    """The simulator modules loaded by a fresh interpreter that ran `fleet ARGV` (and
    then imported `extra`)."""
    code = PROBE.format(extra=repr(extra) if extra else "()", sim=SIM_MODULES)
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                       text=True, cwd=ROOT, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_fleet_run_does_not_load_the_simulator() -> None:
    # `fleet run --help`, and the modules `fleet run` starts (the Manager, the server,
    # the front process).
    assert loaded_after(["run", "--help"], ("controllers.commands.run",
                                            "controllers.runtime.manager",
                                            "controllers.server",
                                            "controllers.front")) == set()
    assert loaded_after(["--help"]) == set()


def test_fleet_demo_loads_the_simulator_so_the_probe_can_fail() -> None:
    assert "clusters.sim" in loaded_after(["demo", "--help"], ("controllers.demo.sandbox",))
