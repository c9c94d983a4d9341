"""Re-pin the Dockerfile's base image by digest (`make base-image-digest`).

The Dockerfile's `ARG PYTHON_BASE=python:3.11-slim-bookworm@sha256:...` is pinned so
that a rebuild gets the same OS and CPython. This asks the registry for the tag's
current digest (the multi-arch index's, with `docker buildx imagetools inspect`: needs
Docker with buildx and access to Docker Hub) and rewrites that line; review and commit
the change with what moved (the Debian and CPython versions). `--digest sha256:...`
writes a digest resolved elsewhere (e.g. `crane digest python:3.11-slim-bookworm`).
`--check` only says whether the Dockerfile is pinned.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
TAG = "python:3.11-slim-bookworm"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
BASE_LINE = re.compile(r"^ARG PYTHON_BASE=(?P<ref>\S+)$", re.M)
PINNED = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")


def base_of(text: str) -> str:
    """The base image reference of the Dockerfile's `ARG PYTHON_BASE=` line."""
    m = BASE_LINE.search(text)
    if m is None:
        raise ValueError("the Dockerfile has no `ARG PYTHON_BASE=...` line")
    return m.group("ref")


def pin(text: str, tag: str, digest: str) -> str:
    """The Dockerfile with its base set to `tag@digest` (ValueError for a bad digest)."""
    if not DIGEST.match(digest):
        raise ValueError(f"{digest!r} is not a sha256:<64 hex> digest")
    base_of(text)
    return BASE_LINE.sub(f"ARG PYTHON_BASE={tag}@{digest}", text, count=1)


def resolve(tag: str) -> str:
    """The tag's digest now, from the registry (docker buildx imagetools inspect)."""
    docker = shutil.which("docker")
    if docker is None:
        raise RuntimeError("docker is not installed: give --digest sha256:... instead")
    r = subprocess.run([docker, "buildx", "imagetools", "inspect", tag,
                        "--format", "{{json .Manifest}}"],
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"docker buildx imagetools inspect {tag}: {r.stderr.strip()}")
    manifest = json.loads(r.stdout)
    digest = manifest.get("digest") if isinstance(manifest, dict) else None
    if not isinstance(digest, str):
        raise RuntimeError(f"no digest in the manifest of {tag}")
    return digest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", default=TAG, help=f"the base image's tag (default: {TAG})")
    p.add_argument("--digest", help="write this digest instead of asking the registry")
    p.add_argument("--check", action="store_true",
                   help="exit 1 unless the base is pinned by digest")
    p.add_argument("--dockerfile", type=Path, default=DOCKERFILE, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    text = args.dockerfile.read_text()
    try:
        if args.check:
            ref = base_of(text)
            if not PINNED.match(ref):
                print(f"the base image {ref} is not pinned by digest", file=sys.stderr)
                return 1
            print(ref)
            return 0
        digest = args.digest or resolve(args.tag)
        new = pin(text, args.tag, digest)
    except (ValueError, RuntimeError) as e:
        print(f"pin_base_image: {e}", file=sys.stderr)
        return 2
    args.dockerfile.write_text(new)
    print(f"{args.dockerfile.name}: base {base_of(text)} -> {args.tag}@{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
